/** The gateway's websocket endpoint on the page's own host (the Vite dev server proxies it). */
export function websocketUrl(): string {
  const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
  return `${scheme}//${location.host}/graphql/ws`;
}
