import { useEffect, useMemo } from 'react';
import { Provider } from 'urql';
import { createBankClient } from './client';
import { LinkBanner } from './components/LinkBanner';
import { ClientPage } from './pages/Client';
import { EmployeePage } from './pages/Employee';
import { HomePage } from './pages/Home';
import { PipelinePage } from './pages/Pipeline';
import { ResultsPage } from './pages/Results';
import { navigate, usePath } from './router';
import { useSession } from './session';

const PAGES = [
  { path: '/', label: 'Home' },
  { path: '/client', label: 'Client' },
  { path: '/employee', label: 'Employee' },
  { path: '/pipeline', label: 'Pipeline' },
  { path: '/results', label: 'Results' },
];

function NavLink({ path, label, current }: { path: string; label: string; current: boolean }) {
  return (
    <a
      href={path}
      aria-current={current ? 'page' : undefined}
      onClick={(e) => {
        if (e.metaKey || e.ctrlKey || e.shiftKey || e.button !== 0) return;
        e.preventDefault();
        navigate(path);
      }}
    >
      {label}
    </a>
  );
}

export function App() {
  const session = useSession();
  const path = usePath();
  const token = session?.token ?? null;
  const client = useMemo(() => createBankClient(token), [token]);
  useEffect(() => () => void client.ws.dispose(), [client]);

  useEffect(() => {
    const page = PAGES.find((p) => p.path === path);
    document.title = page && page.path !== '/' ? `${page.label} · Open Bank` : 'Open Bank';
  }, [path]);

  let page;
  switch (path) {
    case '/client':
      page = <ClientPage />;
      break;
    case '/employee':
      page = <EmployeePage />;
      break;
    case '/pipeline':
      page = <PipelinePage />;
      break;
    case '/results':
      page = <ResultsPage />;
      break;
    case '/':
      page = <HomePage />;
      break;
    default:
      page = (
        <section className="card">
          <h1>Page not found</h1>
          <p>
            <NavLink path="/" label="Back to the home page" current={false} />
          </p>
        </section>
      );
  }

  return (
    <Provider value={client.urql}>
      <a className="skip" href="#main">
        Skip to content
      </a>
      <header className="top">
        <div className="top-inner">
          <a
            className="brand"
            href="/"
            onClick={(e) => {
              e.preventDefault();
              navigate('/');
            }}
          >
            <img src="/favicon.svg" alt="" width="28" height="28" /> Open Bank
          </a>
          <nav aria-label="Main">
            {PAGES.map((p) => (
              <NavLink key={p.path} {...p} current={p.path === path} />
            ))}
            <a href="/graphiql.html">GraphiQL</a>
          </nav>
        </div>
      </header>
      <LinkBanner />
      <main id="main" tabIndex={-1} key={token ?? 'anonymous'}>
        {page}
      </main>
      <footer className="foot">
        Open Bank · amounts in euros · balances and transactions update live
      </footer>
    </Provider>
  );
}
