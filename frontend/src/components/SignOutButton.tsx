import { useMutation } from 'urql';
import { graphql } from '../gql';
import { setSession } from '../session';

const Logout = graphql(`
  mutation Logout {
    logout
  }
`);

/** Ends the session on the server, then forgets it in this tab. */
export function SignOutButton() {
  const [, logout] = useMutation(Logout);
  return (
    <button
      type="button"
      className="secondary"
      onClick={async () => {
        await logout({});
        setSession(null);
      }}
    >
      Sign out
    </button>
  );
}
