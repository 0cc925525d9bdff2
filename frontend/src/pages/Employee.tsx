import { useState } from 'react';
import { useQuery } from 'urql';
import { graphql } from '../gql';
import { apiError } from '../errors';
import { AuthForm } from '../components/AuthForm';
import { ErrorView } from '../components/ErrorView';
import { SignOutButton } from '../components/SignOutButton';
import { TransactionFeed } from '../components/TransactionFeed';
import { formatIban } from '../iban';
import { formatCents } from '../money';
import { useSession } from '../session';

const Accounts = graphql(`
  query Accounts($first: Int, $after: String) {
    accounts(first: $first, after: $after) {
      edges { cursor node { iban balanceCents limitCents aType } }
      pageInfo { hasNextPage endCursor }
    }
  }
`);

const PAGE_SIZES = [20, 50, 100];

function AccountList({ onFollow, following }: { onFollow: (iban: string) => void; following: string | null }) {
  // The cursors of the pages seen so far: [undefined (first page), cursor of page 2, ...].
  const [cursors, setCursors] = useState<(string | undefined)[]>([undefined]);
  const [pageSize, setPageSize] = useState(PAGE_SIZES[0] ?? 20);
  const after = cursors[cursors.length - 1];
  const [{ data, error, fetching }, refetch] = useQuery({ query: Accounts, variables: { first: pageSize, after } });
  const page = data?.accounts;
  return (
    <section className="card" aria-labelledby="accounts-title" aria-busy={fetching} data-testid="account-list">
      <div className="card-head">
        <h2 id="accounts-title">All accounts</h2>
        <button type="button" className="secondary small" onClick={() => refetch({ requestPolicy: 'network-only' })}>
          Refresh
        </button>
      </div>
      <ErrorView error={error ? apiError(error) : null} />
      {fetching && !page && <p className="muted">Loading accounts…</p>}
      {page && (
        <div className="table-wrap">
          <table data-testid="accounts">
            <thead>
              <tr>
                <th scope="col">IBAN</th>
                <th scope="col" className="c-type">Type</th>
                <th scope="col" className="num">
                  Balance
                </th>
                <th scope="col">
                  <span className="sr-only">Action</span>
                </th>
              </tr>
            </thead>
            <tbody>
              {page.edges.map(({ node }) => (
                <tr key={node.iban} data-iban={node.iban} className={following === node.iban ? 'selected' : undefined}>
                  <td className="nowrap mono">{formatIban(node.iban)}</td>
                  <td className="c-type">{node.aType ?? '–'}</td>
                  <td className="num nowrap">{formatCents(node.balanceCents)}</td>
                  <td>
                    <button
                      type="button"
                      className="small"
                      aria-pressed={following === node.iban}
                      onClick={() => onFollow(node.iban)}
                    >
                      {following === node.iban ? 'Following' : 'Follow'}
                    </button>
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
      <nav className="pager" aria-label="Account pages">
        <button type="button" disabled={cursors.length <= 1} onClick={() => setCursors((c) => c.slice(0, -1))}>
          ← Previous
        </button>
        <span className="muted">Page {cursors.length}</span>
        <label className="inline">
          Per page{' '}
          <select
            value={pageSize}
            data-testid="page-size"
            onChange={(e) => {
              setPageSize(Number(e.target.value));
              setCursors([undefined]);
            }}
          >
            {PAGE_SIZES.map((n) => (
              <option key={n} value={n}>
                {n}
              </option>
            ))}
          </select>
        </label>
        <button
          type="button"
          disabled={!page?.pageInfo.hasNextPage || !page.pageInfo.endCursor}
          onClick={() => page?.pageInfo.endCursor && setCursors((c) => [...c, page.pageInfo.endCursor ?? undefined])}
        >
          Next →
        </button>
      </nav>
    </section>
  );
}

export function EmployeePage() {
  const session = useSession();
  const [following, setFollowing] = useState<string | null>(null);
  if (session?.role !== 'EMPLOYEE') {
    return (
      <>
        <section className="hero">
          <h1>Bank employee</h1>
          <p>Every account, and any account's transactions as they happen.</p>
        </section>
        {session?.role === 'CLIENT' && (
          <div className="alert alert-info">You are signed in as a client. Sign out on the Client page first.</div>
        )}
        <div className="narrow">
          <AuthForm mode="login" role="EMPLOYEE" title="Employee sign-in" />
        </div>
      </>
    );
  }
  return (
    <>
      <section className="card account-head">
        <div>
          <h1 className="page-title">Bank employee</h1>
          <p className="muted">
            Signed in as <strong>{session.username}</strong>
          </p>
        </div>
        <SignOutButton />
      </section>
      <div className="grid-2 wide-left">
        <AccountList onFollow={setFollowing} following={following} />
        {following ? (
          <TransactionFeed
            key={following}
            iban={following}
            count={20}
            fields={['time', 'counterparty', 'amount', 'balance']}
            title={`Live: ${formatIban(following)}`}
          />
        ) : (
          <section className="card">
            <h2>Follow an account</h2>
            <p className="muted">Choose “Follow” on any account to see its transactions as they happen.</p>
          </section>
        )}
      </div>
    </>
  );
}
