/** Writes one frame at a time, in call order, on a stream that several tasks write to (chunks, payments, countersignatures). */
export class SerialWriter {
  private tail: Promise<unknown> = Promise.resolve()

  run<T> (write: () => Promise<T>): Promise<T> {
    const next = this.tail.then(write, write)
    this.tail = next.catch(() => {})
    return next
  }
}
