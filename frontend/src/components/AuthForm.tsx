import { useId, useState, type FormEvent } from 'react';
import { useMutation } from 'urql';
import { graphql } from '../gql';
import { apiError, type ApiError } from '../errors';
import { setSession } from '../session';
import { ErrorView } from './ErrorView';

const Login = graphql(`
  mutation Login($username: String!, $password: String!) {
    login(username: $username, password: $password) { token username role account { iban } }
  }
`);

const Register = graphql(`
  mutation Register($username: String!, $password: String!) {
    register(username: $username, password: $password) { token username role account { iban } }
  }
`);

export function usernameProblem(name: string): string | null {
  if (name.length < 3) return 'At least 3 characters';
  if (name.length > 32) return 'At most 32 characters';
  if (!/^[a-zA-Z0-9._-]+$/.test(name)) return "Only letters, digits, '.', '_' and '-'";
  return null;
}

export function passwordProblem(password: string): string | null {
  if (password.length < 8) return 'At least 8 characters';
  if (password.length > 128) return 'At most 128 characters';
  return null;
}

interface Props {
  mode: 'login' | 'register';
  role: 'CLIENT' | 'EMPLOYEE';
  title: string;
}

export function AuthForm({ mode, role, title }: Props) {
  const id = useId();
  const [username, setUsername] = useState('');
  const [password, setPassword] = useState('');
  const [touched, setTouched] = useState({ username: false, password: false });
  const [error, setError] = useState<ApiError | null>(null);
  const [login, runLogin] = useMutation(Login);
  const [register, runRegister] = useMutation(Register);
  const fetching = login.fetching || register.fetching;

  const validate = mode === 'register';
  const userProblem = validate ? usernameProblem(username) : username ? null : 'Enter your user name';
  const passProblem = validate ? passwordProblem(password) : password ? null : 'Enter your password';

  async function submit(e: FormEvent) {
    e.preventDefault();
    setTouched({ username: true, password: true });
    if (userProblem || passProblem) return;
    setError(null);
    const vars = { username: username.trim(), password };
    let session;
    if (mode === 'login') {
      const result = await runLogin(vars);
      if (result.error) return setError(apiError(result.error));
      session = result.data?.login;
    } else {
      const result = await runRegister(vars);
      if (result.error) return setError(apiError(result.error));
      session = result.data?.register;
    }
    if (!session) return;
    if (session.role !== role) {
      setError({
        code: 'FORBIDDEN',
        message:
          role === 'EMPLOYEE'
            ? 'This page is for bank employees. Clients sign in on the Client page.'
            : 'Bank employees sign in on the Employee page.',
      });
      return;
    }
    setSession({ token: session.token, username: session.username, role: session.role, iban: session.account.iban });
  }

  const showUser = touched.username && userProblem;
  const showPass = touched.password && passProblem;
  return (
    <form className="card auth" onSubmit={submit} noValidate aria-labelledby={`${id}-title`}>
      <h2 id={`${id}-title`}>{title}</h2>
      <div className="field">
        <label htmlFor={`${id}-user`}>User name</label>
        <input
          id={`${id}-user`}
          name="username"
          autoComplete="username"
          value={username}
          aria-invalid={showUser ? true : undefined}
          aria-describedby={`${id}-user-msg`}
          onChange={(e) => {
            setUsername(e.target.value);
            if (e.target.value.length >= 3) setTouched((t) => ({ ...t, username: true }));
          }}
          onBlur={() => setTouched((t) => ({ ...t, username: true }))}
        />
        <p id={`${id}-user-msg`} className={showUser ? 'hint invalid' : 'hint'}>
          {showUser ? userProblem : validate ? "3–32 letters, digits, '.', '_' or '-'" : '\u00a0'}
        </p>
      </div>
      <div className="field">
        <label htmlFor={`${id}-pass`}>Password</label>
        <input
          id={`${id}-pass`}
          name="password"
          type="password"
          autoComplete={mode === 'register' ? 'new-password' : 'current-password'}
          value={password}
          aria-invalid={showPass ? true : undefined}
          aria-describedby={`${id}-pass-msg`}
          onChange={(e) => {
            setPassword(e.target.value);
            if (e.target.value.length >= 8) setTouched((t) => ({ ...t, password: true }));
          }}
          onBlur={() => setTouched((t) => ({ ...t, password: true }))}
        />
        <p id={`${id}-pass-msg`} className={showPass ? 'hint invalid' : 'hint'}>
          {showPass ? passProblem : validate ? '8–128 characters' : '\u00a0'}
        </p>
      </div>
      <ErrorView error={error} />
      <button type="submit" className="primary" disabled={fetching}>
        {fetching ? 'Please wait…' : mode === 'login' ? 'Sign in' : 'Open an account'}
      </button>
    </form>
  );
}
