// The GraphQL client: urql over HTTP for queries and mutations, graphql-ws for subscriptions.
import { Client, cacheExchange, fetchExchange, subscriptionExchange } from 'urql';
import { createClient as createWsClient, type Client as WsClient } from 'graphql-ws';
import { useSyncExternalStore } from 'react';

export type LinkState = 'connecting' | 'connected' | 'reconnecting';

let linkState: LinkState = 'connecting';
const linkListeners = new Set<() => void>();

function setLinkState(state: LinkState) {
  if (state === linkState) return;
  linkState = state;
  linkListeners.forEach((l) => l());
}

/** The live link's state, for the banner shown while the websocket is down. */
export function useLinkState(): LinkState {
  return useSyncExternalStore(
    (l) => {
      linkListeners.add(l);
      return () => linkListeners.delete(l);
    },
    () => linkState,
  );
}

export function websocketUrl(): string {
  const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
  return `${scheme}//${location.host}/graphql/ws`;
}

export interface BankClient {
  urql: Client;
  ws: WsClient;
}

export function createBankClient(token: string | null): BankClient {
  setLinkState('connecting');
  const ws = createWsClient({
    url: websocketUrl(),
    // The session token goes in connection_init, never in the URL.
    connectionParams: () => (token ? { token } : {}),
    lazy: false,
    keepAlive: 10_000,
    retryAttempts: Number.POSITIVE_INFINITY,
    shouldRetry: () => true,
    retryWait: async (retries) => {
      const ms = Math.min(1000 * 2 ** Math.min(retries, 3), 8000) * (0.75 + Math.random() / 2);
      await new Promise((resolve) => setTimeout(resolve, ms));
    },
    on: {
      connected: () => {
        setLinkState('connected');
      },
      closed: () => setLinkState('reconnecting'),
      error: () => setLinkState('reconnecting'),
    },
  });
  const urql = new Client({
    url: '/graphql',
    requestPolicy: 'network-only',
    fetchOptions: () => (token ? { headers: { Authorization: `Bearer ${token}` } } : {}),
    exchanges: [
      cacheExchange,
      fetchExchange,
      subscriptionExchange({
        forwardSubscription(request) {
          const input = { ...request, query: request.query || '' };
          return {
            subscribe(sink) {
              const unsubscribe = ws.subscribe(input, sink);
              return { unsubscribe };
            },
          };
        },
      }),
    ],
  });
  return { urql, ws };
}
