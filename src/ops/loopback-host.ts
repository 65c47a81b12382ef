/**
 * Host names for servers bound to loopback, which refuse any other name in a
 * request's Host header (DNS rebinding from web pages).
 */
export function isLoopbackName (host: string): boolean {
  const name = host.toLowerCase()
  return name === 'localhost' || name.endsWith('.localhost') || name === '::1' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(name)
}

/** The host name of a Host header: `[::1]:8080` → `::1`, `localhost:8080` → `localhost`. */
export function hostHeaderName (header: string): string {
  if (header.startsWith('[')) {
    const end = header.indexOf(']')
    return end === -1 ? header : header.slice(1, end)
  }
  const colon = header.indexOf(':')
  return colon === -1 ? header : header.slice(0, colon)
}
