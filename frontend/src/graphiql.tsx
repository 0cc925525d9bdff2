import { StrictMode, type ComponentProps } from 'react';
import { createRoot } from 'react-dom/client';
import { GraphiQL } from 'graphiql';
import 'graphiql/style.css';

type Fetcher = ComponentProps<typeof GraphiQL>['fetcher'];

const fetcher: Fetcher = async (params, opts) => {
  const headers: Record<string, string> = { 'content-type': 'application/json', accept: 'application/json' };
  Object.assign(headers, (opts?.headers ?? {}) as Record<string, string>);
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
