import { StrictMode, type ComponentProps } from 'react';
import { createRoot } from 'react-dom/client';
import { GraphiQL } from 'graphiql';
import { createClient, type Client as WsClient } from 'graphql-ws';
import { Kind, parse } from 'graphql';
import { websocketUrl } from './wsUrl';
import 'graphiql/style.css';

type Fetcher = ComponentProps<typeof GraphiQL>['fetcher'];

// One websocket per Authorization header: the token goes in connection_init, never in a URL.
const sockets = new Map<string, WsClient>();
function socketFor(authorization: string): WsClient {
  let client = sockets.get(authorization);
  if (!client) {
    client = createClient({
      url: websocketUrl(),
      connectionParams: authorization ? { Authorization: authorization } : {},
      retryAttempts: 5,
    });
    sockets.set(authorization, client);
  }
  return client;
}

function isSubscription(query: string, operationName?: string | null): boolean {
  try {
    const ops = parse(query).definitions.filter((d) => d.kind === Kind.OPERATION_DEFINITION);
    const op = operationName ? ops.find((d) => d.name?.value === operationName) : ops[0];
    return op?.operation === 'subscription';
  } catch {
    return false;
  }
}

const fetcher: Fetcher = async (params, opts) => {
  const headers: Record<string, string> = { 'content-type': 'application/json', accept: 'application/json' };
  Object.assign(headers, (opts?.headers ?? {}) as Record<string, string>);
  if (isSubscription(params.query, params.operationName)) {
    const authorization = Object.entries(headers).find(([k]) => k.toLowerCase() === 'authorization')?.[1] ?? '';
    return socketFor(authorization).iterate({
      query: params.query,
      variables: (params.variables ?? undefined) as Record<string, unknown> | undefined,
      operationName: params.operationName ?? undefined,
    });
  }
  const response = await fetch('/graphql', { method: 'POST', headers, body: JSON.stringify(params) });
  return response.json();
};

const initialQuery = `# The bank's public counters. Sign in with the login mutation and put
# {"Authorization": "Bearer <token>"} under Headers to read your own account.
query {
  bankStats { accounts transfers transactions transfersPerSecond }
}
`;

const root = document.getElementById('graphiql');
if (root) {
  root.textContent = '';
  createRoot(root).render(
    <StrictMode>
      <GraphiQL fetcher={fetcher} defaultQuery={initialQuery} />
    </StrictMode>,
  );
}
