// The assertions the client scripts share: each counts one check and throws on a mismatch
// (the script then exits non-zero); `passed()` prints the line the Rust test looks for.

import assert from 'node:assert/strict'

let checks = 0

// A response without an error (returned for further checks; not counted).
export function ok(name, res) {
  assert.equal(res.error, null, `${name}: ${JSON.stringify(res.error)}`)
  return res
}

export function check(name, got, want) {
  checks += 1
  assert.deepEqual(got, want, name)
}

// An error response with PostgREST's `code` (and the HTTP status, when given).
export function failsWith(name, res, code, status) {
  checks += 1
  assert.ok(res.error, `${name}: expected an error, got ${JSON.stringify(res.data)}`)
  assert.equal(res.error.code, code, `${name}: ${JSON.stringify(res.error)}`)
  if (status !== undefined) assert.equal(res.status, status, `${name}: ${JSON.stringify(res.error)}`)
}

export const ids = (rows) => rows.map((r) => r.id)

export function passed() {
  console.log(`${checks} passed, 0 failed`)
}
