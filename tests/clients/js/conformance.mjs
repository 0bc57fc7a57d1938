// Drives a running sqlite-rest with the real postgrest-js client (npm @supabase/postgrest-js,
// pinned in package.json / package-lock.json) and checks every answer: a few reads, then
// every write the client offers, reading back through the same client. Exits non-zero on
// the first mismatch.
//
// Usage: node conformance.mjs BASE_URL TOKEN NODE_MODULES_DIR   (the server serves a fresh
// copy of the fixture of crates/server/tests/fixtures/fixture.sql)

import { createRequire } from 'node:module'
import { join } from 'node:path'

import { check, failsWith, ids, ok, passed } from './checks.mjs'

const [base, token, nodeModules] = process.argv.slice(2)
const require = createRequire(join(nodeModules, 'resolver.js'))
const { PostgrestClient } = require('@supabase/postgrest-js')

// supabase-js passes its `db.schema` ("public"), so profile headers go on every request.
const client = new PostgrestClient(base, {
  headers: { Authorization: `Bearer ${token}` },
  schema: 'public',
})
const t = (name) => client.from(name)

// Reads.
let r = ok('select', await t('projects').select('id, name').eq('id', 1))
check('select', r.data, [{ id: 1, name: 'Windows 7' }])
r = ok('count', await t('items').select('id', { count: 'exact' }).order('id').range(0, 1))
check('range + count', [ids(r.data), r.count], [[1, 2], 15])
r = ok('contains', await t('projects').select('id').contains('settings->tags', ['b']).order('id'))
check('contains', ids(r.data), [1, 2])
r = ok('contains object', await t('projects').select('id').contains('settings', { foo: { bar: 'baz' } }).order('id'))
check('contains object', ids(r.data), [1, 4])
r = ok('contains empty', await t('projects').select('id').contains('settings->tags', []).order('id'))
check('contains empty', ids(r.data), [1, 2, 4])
r = ok('containedBy', await t('projects').select('id').containedBy('settings->tags', ['b', 'c']).order('id'))
check('containedBy', ids(r.data), [2, 4])
r = ok('overlaps', await t('projects').select('id').overlaps('settings->tags', ['a', 'z']))
check('overlaps', ids(r.data), [1])
r = ok('single', await t('clients').select('name').eq('id', 2).single())
check('single', r.data, { name: 'Apple' })

// Resource embedding: select() strings with embeds, as supabase apps write them.
r = ok('embed many-to-one', await t('projects').select('id, clients(name)').in('id', [1, 5]).order('id'))
check('embed many-to-one', r.data, [{ id: 1, clients: { name: 'Microsoft' } }, { id: 5, clients: null }])
r = ok('embed one-to-many', await t('clients').select('name, projects(id)').eq('id', 2).order('id', { referencedTable: 'projects' }))
check('embed one-to-many', r.data, [{ name: 'Apple', projects: [{ id: 3 }, { id: 4 }] }])
r = ok('embed many-to-many', await t('users').select('name, tasks(id)').eq('id', 3).order('id', { referencedTable: 'tasks' }))
check('embed many-to-many', r.data, [{ name: 'Dwight Schrute', tasks: [{ id: 1 }, { id: 5 }] }])
r = ok(
  'embed nested',
  await t('clients')
    .select('name, projects(name, tasks(name))')
    .eq('id', 1)
    .order('id', { referencedTable: 'projects' })
    .order('name', { referencedTable: 'projects.tasks', ascending: false })
    .limit(1, { referencedTable: 'projects' }),
)
check('embed nested', r.data, [{ name: 'Microsoft', projects: [{ name: 'Windows 7', tasks: [{ name: 'Design w7' }, { name: 'Code w7' }] }] }])
r = ok('embed inner', await t('clients').select('name, projects!inner(name)').eq('projects.name', 'IOS'))
check('embed inner', r.data, [{ name: 'Apple', projects: [{ name: 'IOS' }] }])
r = ok('embed inner count', await t('clients').select('id, projects!inner(id)', { count: 'exact' }).eq('projects.id', 4))
check('embed inner count', [ids(r.data), r.count], [[2], 1])
r = ok('embed alias and hint', await t('messages').select('body, sender:users!sender_id(name), recipient:users!recipient_id(name)').eq('id', 1))
check('embed alias and hint', r.data, [{ body: 'hi', sender: { name: 'Angela Martin' }, recipient: { name: 'Michael Scott' } }])
r = ok('embed spread', await t('projects').select('name, ...clients(client:name)').eq('id', 3))
check('embed spread', r.data, [{ name: 'IOS', client: 'Apple' }])
r = ok('embed null filter', await t('projects').select('id, clients()').is('clients', null))
check('embed null filter', r.data, [{ id: 5 }])
r = ok('embed related order', await t('projects').select('id, clients(name)').order('clients(name)', { ascending: true }).order('id').limit(2))
check('embed related order', ids(r.data), [3, 4])
failsWith('embed ambiguous', await t('users').select('messages(*)'), 'PGRST201', 300)
failsWith('embed no relationship', await t('projects').select('nope(*)'), 'PGRST200', 400)
failsWith('embed filter not selected', await t('projects').select('id').eq('tasks.id', 1), 'PGRST108', 400)

// RPC (the server serves crates/server/tests/fixtures/rpc): rpc() posts the arguments; with
// { get: true } they go in the query string; the result filters like a table.
r = ok('rpc post', await client.rpc('projects_of', { client_id: 1 }).select('id, name').order('id', { ascending: false }))
check('rpc post', r.data, [{ id: 2, name: 'Windows 10' }, { id: 1, name: 'Windows 7' }])
r = ok('rpc get', await client.rpc('projects_of', { client_id: 2 }, { get: true }).select('id').gt('id', 3))
check('rpc get', r.data, [{ id: 4 }])
r = ok('rpc count', await client.rpc('projects_of', { client_id: 1 }, { count: 'exact' }).select('id').range(0, 0))
check('rpc count', [r.status, r.count, r.data], [206, 2, [{ id: 1 }]])
r = ok('rpc head', await client.rpc('projects_of', { client_id: 1 }, { head: true, count: 'exact' }))
check('rpc head', [r.status, r.count, r.data], [200, 2, null])
r = ok('rpc scalar', await client.rpc('project_count', { min_id: 2 }))
check('rpc scalar', r.data, 4)
r = ok('rpc single', await client.rpc('projects_of', { client_id: 2 }).select('name').eq('id', 3).single())
check('rpc single', r.data, { name: 'IOS' })
failsWith('rpc unknown arguments', await client.rpc('projects_of', { client: 1 }), 'PGRST202', 404)
failsWith('rpc bad value', await client.rpc('projects_of', { client_id: 'x' }), '22P02', 400)
failsWith('rpc write over get', await client.rpc('add_client', { name: 'Nope' }, { get: true }), '25006', 405)

// Aggregates (the server runs with --aggregates-enabled): select() strings as PostgREST 12
// documents them, grouped by the other selected columns.
r = ok('aggregate count', await t('projects').select('count()'))
check('aggregate count', r.data, [{ count: 5 }])
r = ok(
  'aggregate grouped',
  await t('projects')
    .select('client_id, total:budget.sum(), budget.avg(), id.max(), id.min(), id.count()')
    .not('client_id', 'is', null)
    .order('client_id'),
)
check('aggregate grouped', r.data, [
  { client_id: 1, total: 3500.75, avg: 1750.375, max: 2, min: 1, count: 2 },
  { client_id: 2, total: 99.99, avg: 99.99, max: 4, min: 3, count: 2 },
])
r = ok('aggregate cast', await t('projects').select('budget.avg()::int, budget::int.sum()').eq('client_id', 1))
check('aggregate cast', r.data, [{ avg: 1750, sum: 3500 }])
r = ok('aggregate in embed', await t('clients').select('name, projects(count(), budget.max())').order('id'))
check('aggregate in embed', r.data, [
  { name: 'Microsoft', projects: [{ count: 2, max: 2000.25 }] },
  { name: 'Apple', projects: [{ count: 2, max: 99.99 }] },
])
r = ok('aggregate spread', await t('projects').select('...clients(name), budget.sum()').order('clients(name)'))
check('aggregate spread', r.data, [
  { name: 'Apple', sum: 99.99 },
  { name: 'Microsoft', sum: 3500.75 },
  { name: null, sum: 0.5 },
])
r = ok('aggregate count exact', await t('tasks').select('project_id, count()', { count: 'exact' }).order('project_id').limit(2))
check('aggregate count exact', [r.data, r.count], [[{ project_id: 1, count: 2 }, { project_id: 2, count: 2 }], 4])
failsWith('aggregate unknown column', await t('projects').select('nope.sum()'), '42703', 400)
failsWith('aggregate of text', await t('projects').select('name.sum()'), '42883', 404)

// Full-text search: textSearch() over an external-content FTS5 index (articles) and an FTS5
// table (notes).
const art = () => t('articles').select('id').order('id')
const search = async (name, q, want) => check(name, ids(ok(name, await q).data), want)
await search('textSearch', art().textSearch('body', 'fat & !rat'), [1])
await search('textSearch prefix', art().textSearch('body', 'supernova:*'), [2])
await search('textSearch config', art().textSearch('body', 'cat', { config: 'english' }), [1, 3])
await search('textSearch plain', art().textSearch('body', 'fat cats', { type: 'plain' }), [1, 3])
await search('textSearch phrase', art().textSearch('body', 'fat cats', { type: 'phrase' }), [1])
await search(
  'textSearch websearch',
  art().textSearch('body', '"fat rat" or supernovae -galaxy', { type: 'websearch', config: 'english' }),
  [3],
)
await search('not fts', art().not('body', 'fts', 'fat'), [2])
await search('or fts', t('notes').select('id').or('title.fts.rats,body.fts.dogs').order('id'), [2, 3])
failsWith(
  'textSearch without an FTS5 index',
  await t('projects').select('id').textSearch('name', 'windows'),
  'PGRST127',
  400,
)
failsWith('textSearch syntax error', await art().textSearch('body', 'fat cat'), '42601', 400)

// insert: without select() the answer is minimal.
r = ok('insert', await t('clients').insert({ id: 3, name: 'IBM' }))
check('insert minimal', [r.status, r.data], [201, null])
r = ok('insert select', await t('clients').insert({ id: 4, name: 'Oracle' }).select())
check('insert select', r.data, [{ id: 4, name: 'Oracle' }])
r = ok('select after insert', await t('clients').select('*').gte('id', 3).order('id'))
check('select after insert', r.data, [{ id: 3, name: 'IBM' }, { id: 4, name: 'Oracle' }])

// Bulk insert: ?columns="…" from the union of keys; missing keys are null by default.
failsWith(
  'bulk insert: qty NOT NULL gets null',
  await t('stock').insert([{ sku: 'B-3', qty: 1 }, { sku: 'B-4', note: 'x' }]),
  '23502',
  400,
)
r = ok(
  'bulk insert',
  await t('stock')
    .insert([{ sku: 'B-1', qty: 1 }, { sku: 'B-2', qty: 2, note: 'two' }], { count: 'exact' })
    .select('sku, qty, note'),
)
check('bulk insert rows', r.data, [
  { sku: 'B-1', qty: 1, note: null },
  { sku: 'B-2', qty: 2, note: 'two' },
])
check('bulk insert count', r.count, 2)

// defaultToNull: false → missing=default: absent keys take the column default.
r = ok(
  'defaults',
  await t('stock')
    .insert([{ sku: 'D-1' }, { sku: 'D-2', qty: 7, note: 'x' }], { defaultToNull: false })
    .select('sku, qty, note'),
)
check('defaultToNull false', r.data, [
  { sku: 'D-1', qty: 0, note: 'none' },
  { sku: 'D-2', qty: 7, note: 'x' },
])

// upsert: merge on the primary key, ignoreDuplicates, onConflict on a UNIQUE column.
r = ok(
  'upsert',
  await t('clients')
    .upsert([{ id: 1, name: 'MSFT' }, { id: 5, name: 'SAP' }])
    .select(),
)
check('upsert merge', [r.status, r.data], [201, [{ id: 1, name: 'MSFT' }, { id: 5, name: 'SAP' }]])
r = ok('upsert update only', await t('clients').upsert({ id: 5, name: 'SAP SE' }).select())
check('upsert update only', [r.status, r.data], [200, [{ id: 5, name: 'SAP SE' }]])
r = ok(
  'upsert ignore',
  await t('clients')
    .upsert([{ id: 1, name: 'ignored' }, { id: 6, name: 'HP' }], { ignoreDuplicates: true })
    .select(),
)
check('upsert ignoreDuplicates', r.data, [{ id: 6, name: 'HP' }])
r = ok('kept', await t('clients').select('name').eq('id', 1))
check('ignored row kept', r.data, [{ name: 'MSFT' }])
r = ok(
  'upsert onConflict',
  await t('counters').upsert({ slug: 'home', hits: 42 }, { onConflict: 'slug' }).select(),
)
check('upsert onConflict', r.data, [{ id: 1, slug: 'home', hits: 42 }])
r = ok(
  'upsert defaultToNull',
  await t('counters')
    .upsert([{ slug: 'new' }], { onConflict: 'slug', defaultToNull: false })
    .select('slug, hits'),
)
check('upsert defaultToNull false', r.data, [{ slug: 'new', hits: 0 }])
failsWith(
  'onConflict on a column that is not unique',
  await t('counters').upsert({ slug: 'x', hits: 1 }, { onConflict: 'hits' }),
  '42P10',
  400,
)

// update and delete with filters, then read back.
r = ok('update', await t('projects').update({ budget: 10 }).eq('client_id', 2).select('id, budget'))
check('update', r.data, [{ id: 3, budget: 10 }, { id: 4, budget: 10 }])
r = ok('update count', await t('projects').update({ name: 'x' }, { count: 'exact' }).eq('id', 999))
check('update nothing', [r.status, r.count], [204, 0])
r = ok('delete', await t('messages').delete().eq('recipient_id', 1).select('id'))
check('delete', r.data, [{ id: 2 }, { id: 3 }])
r = ok('select after delete', await t('messages').select('id'))
check('select after delete', r.data, [{ id: 1 }])
failsWith('unfiltered delete', await t('messages').delete(), '21000', 400)

// rollback(): the answer is the write's, nothing stays.
r = ok('rollback', await t('clients').insert({ id: 9, name: 'Ghost' }).select().rollback())
check('rollback answer', r.data, [{ id: 9, name: 'Ghost' }])
r = ok('after rollback', await t('clients').select('id').eq('id', 9))
check('rollback left nothing', r.data, [])
r = ok('rollback delete', await t('items').delete().gt('id', 0).rollback())
r = ok('after rollback delete', await t('items').select('id', { count: 'exact', head: true }))
check('rollback delete left everything', r.count, 15)

// maxAffected(): over the limit is PGRST124 and nothing is written.
failsWith('maxAffected', await t('items').delete().lt('id', 10).maxAffected(3), 'PGRST124', 400)
r = ok('after maxAffected', await t('items').select('id', { count: 'exact', head: true }))
check('maxAffected wrote nothing', r.count, 15)
r = ok('maxAffected within', await t('items').delete().lt('id', 3).maxAffected(3).select('id'))
check('maxAffected within', r.data, [{ id: 1 }, { id: 2 }])
failsWith(
  'maxAffected update',
  await t('projects').update({ name: 'y' }).gt('id', 0).maxAffected(1),
  'PGRST124',
  400,
)

// single() on a write.
r = ok('insert single', await t('clients').insert({ id: 7, name: 'Dell' }).select().single())
check('insert single', r.data, { id: 7, name: 'Dell' })

// A response past the server's 1 MiB buffer streams (chunked, head first); the client reads
// it whole, count included.
const big = 'x'.repeat(1_500_000)
ok('insert large', await t('no_pk').insert([{ a: big, b: 'big' }, { a: big, b: 'big' }]))
r = ok('streamed read', await t('no_pk').select('a, b', { count: 'exact' }).eq('b', 'big'))
check('streamed read', [r.status, r.count, r.data.map((x) => [x.a === big, x.b])], [200, 2, [[true, 'big'], [true, 'big']]])
r = ok('streamed csv', await t('no_pk').select('b, a').eq('b', 'big').csv())
check('streamed csv', r.data, `b,a\nbig,${big}\nbig,${big}`)

// Errors carry PostgREST codes.
failsWith('duplicate key', await t('clients').insert({ id: 1, name: 'dup' }), '23505', 409)
failsWith('foreign key', await t('stock').insert({ sku: 'F', client_id: 99 }), '23503', 409)
failsWith('check', await t('stock').insert({ sku: 'N', qty: -1 }), '23514', 400)
failsWith('unknown column', await t('clients').insert({ id: 8, nope: 1 }), 'PGRST204', 400)

// A writing RPC: through the writer, its row returned, then readable.
r = ok('rpc write', await client.rpc('add_client', { name: 'RPC Inc' }))
check('rpc write', r.data.name, 'RPC Inc')
const written = r.data.id
r = ok('rpc write read back', await t('clients').select('id').eq('name', 'RPC Inc'))
check('rpc write read back', ids(r.data), [written])
failsWith('rpc write twice', await client.rpc('add_client', { name: 'RPC Inc' }), '23505', 409)

passed()
