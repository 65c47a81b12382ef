/**
 * Which proxies a worker knows of and which have challenged it: the counts
 * its announcer re-announces by until the proxies have listed it.
 *
 * A worker takes no presence, so it learns proxies from /cocoon/info records
 * in its directory, and it remembers them since it started (the directory
 * forgets a proxy soon after its idle connection closes). A challenge can
 * arrive before the challenger's /cocoon/info has told the worker who it is
 * (the info is asked when the connection is identified, at the same time):
 * such a challenger is held, and counted when its record arrives as a proxy's
 * (the worker asks for it again, in case the first request failed).
 */
import { Role } from '../../gen/node.pb.js'
import type { PeerRecord } from '../../p2p/peer-directory.js'

/** Proxies remembered, and challengers held; more than the announcer asks for (8). */
export const PROXIES_SEEN_MAX = 64

export class ProxyConfirmations {
  private readonly seen = new Set<string>()
  private readonly unidentified = new Set<string>()
  private readonly confirm: (peerId: string) => void

  /** `confirm` is told of each proxy that challenged this worker. */
  constructor (confirm: (peerId: string) => void) {
    this.confirm = confirm
  }

  /** Proxies heard of since start (at most PROXIES_SEEN_MAX). */
  get known (): number {
    return this.seen.size
  }

  /** A directory record arrived or changed. */
  peerUpdated (record: Pick<PeerRecord, 'peerId' | 'role'>): void {
    if (record.role !== Role.PROXY) return
    if (this.seen.size < PROXIES_SEEN_MAX) this.seen.add(record.peerId)
    if (this.unidentified.delete(record.peerId)) this.confirm(record.peerId)
  }

  /** A peer challenged this worker; `role` is what the directory says of it now, if anything. */
  challengedBy (peerId: string, role: Role | undefined): void {
    if (role === Role.PROXY) this.confirm(peerId)
    else if (role == null && this.unidentified.size < PROXIES_SEEN_MAX) this.unidentified.add(peerId)
  }
}
