// The GraphQL client: urql over HTTP for queries and mutations, graphql-ws for subscriptions.
import { Client, cacheExchange, fetchExchange, subscriptionExchange } from 'urql';
import { createClient as createWsClient, type Client as WsClient } from 'graphql-ws';
import { useSyncExternalStore } from 'react';
import { websocketUrl } from './wsUrl';

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


export interface BankClient {
  urql: Client;
  ws: WsClient;
}

// Only the newest client reports the link's state: a client disposed on sign-in or sign-out
// closes its socket afterwards, which is not an interruption.
let generation = 0;

export function createBankClient(token: string | null): BankClient {
  const mine = ++generation;
  const report = (state: LinkState) => {
    if (mine === generation) setLinkState(state);
  };
  report('connecting');
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
      connected: () => report('connected'),
      closed: () => report('reconnecting'),
      error: () => report('reconnecting'),
    },
  });
  const urql = new Client({
    url: '/graphql',
    requestPolicy: 'network-only',
    // The gateway answers GET /graphql with GraphiQL: queries go as POST like mutations.
    preferGetMethod: false,
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
