// Drives a running sqlite-rest started with a permissions file the way a supabase app does:
// the real postgrest-js client (pinned in package.json / package-lock.json) sends the
// project's API key in `apikey` on every request, and in `Authorization` either the key again
// (no session: the key's role, anon) or the signed-in user's JWT (the user's role and claims).
// Checks what each one may read and write, row filters and forbidden columns included. Exits
// non-zero on the first mismatch.
//
// Usage: node supabase_auth.mjs BASE_URL TOKEN NODE_MODULES_DIR API_KEY USER_JWT
//   (TOKEN is unused; USER_JWT has role "authenticated" and sub "Ann"; the server serves a
//   fresh copy of crates/server/tests/fixtures/fixture.sql with the permissions of
//   crates/server/tests/client_postgrest_js.rs)

import { createRequire } from 'node:module'
import { join } from 'node:path'

import { check, failsWith, ids, ok, passed } from './checks.mjs'

const [base, , nodeModules, apiKey, userJwt] = process.argv.slice(2)
const require = createRequire(join(nodeModules, 'resolver.js'))
const { PostgrestClient } = require('@supabase/postgrest-js')

// What supabase-js gives postgrest-js: the key always, the session's token when signed in.
const connect = (bearer) =>
  new PostgrestClient(base, {
    headers: { apikey: apiKey, ...(bearer ? { Authorization: `Bearer ${bearer}` } : {}) },
    schema: 'public',
  })
const anon = connect(apiKey)
const keyOnly = connect(null)
const user = connect(userJwt)
const forged = connect(userJwt.slice(0, -4) + (userJwt.endsWith('AAAA') ? 'BBBB' : 'AAAA'))


// Without a session (the key in both headers, or in `apikey` alone): the key's role, anon,
// reads the granted columns of every article and writes nothing.
for (const [who, c] of [['anon', anon], ['key only', keyOnly]]) {
  let r = ok(`${who} read`, await c.from('articles').select('id, title, author').order('id'))
  check(`${who} read`, ids(r.data), [1, 2, 3, 4])
  failsWith(`${who} forbidden column`, await c.from('articles').select('id, body'), '42501', 401)
  failsWith(`${who} forbidden column in a filter`, await c.from('articles').select('id').eq('body', 'x'), '42501', 401)
  failsWith(`${who} insert`, await c.from('articles').insert({ id: 9, title: 'T', author: 'Ann' }), '42501', 401)
  failsWith(`${who} table without a grant`, await c.from('clients').select('id'), 'PGRST205', 404)
}

// Signed in as Ann: the JWT decides (role authenticated, sub Ann), the key is only the key.
let r = ok('user read', await user.from('articles').select('id, body').order('id'))
check('user read', ids(r.data), [1, 2, 3, 4])
r = ok('user full-text search', await user.from('articles').select('id').textSearch('body', 'fat').order('id'))
check('user full-text search', ids(r.data), [1, 3])
r = ok('user insert own', await user.from('articles').insert({ id: 5, title: 'Mine', body: 'fresh cat', author: 'Ann' }).select('id, author'))
check('user insert own', r.data, [{ id: 5, author: 'Ann' }])
r = ok('user search sees the insert', await user.from('articles').select('id').textSearch('body', 'fresh'))
check('user search sees the insert', ids(r.data), [5])
failsWith('user insert for another', await user.from('articles').insert({ id: 6, title: 'Not mine', author: 'Bob' }), '42501', 403)
r = ok('user update another', await user.from('articles').update({ title: 'Taken' }).eq('id', 2).select('id'))
check('user update another', r.data, [])
r = ok('user update own', await user.from('articles').update({ title: 'Fatter Cats' }).eq('id', 1).select('id, title'))
check('user update own', r.data, [{ id: 1, title: 'Fatter Cats' }])
failsWith('user update a column without the grant', await user.from('articles').update({ author: 'Bob' }).eq('id', 1), '42501', 403)
r = ok('user delete another', await user.from('articles').delete().eq('id', 2).select('id'))
check('user delete another', r.data, [])
r = ok('user delete own', await user.from('articles').delete().eq('id', 3).select('id'))
check('user delete own', ids(r.data), [3])
r = ok('after the writes', await anon.from('articles').select('id, title').order('id'))
check('after the writes', r.data, [
  { id: 1, title: 'Fatter Cats' },
  { id: 2, title: 'Supernovae' },
  { id: 4, title: 'Quiet' },
  { id: 5, title: 'Mine' },
])
failsWith('user table without a grant', await user.from('clients').select('id'), 'PGRST205', 404)

// A token that does not verify is refused, the key notwithstanding.
failsWith('forged token', await forged.from('articles').select('id'), 'PGRST301', 401)

passed()
