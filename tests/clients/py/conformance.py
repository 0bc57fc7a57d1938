"""Drives a running sqlite-rest with the real postgrest-py client (PyPI `postgrest`, pinned in
scripts/lib/tools.sh) and checks every answer. Exits non-zero on the first mismatch.

Usage: conformance.py BASE_URL TOKEN   (the server serves the fixture of
crates/server/tests/fixtures/fixture.sql)
"""

from postgrest import CountMethod

from harness import check, connect, done, expect_error

client = connect()


def ids(resp):
    return [row["id"] for row in resp.data]


t = lambda name: client.from_(name)  # noqa: E731

# select, rename, JSON paths
r = t("projects").select("id", "name").eq("id", 1).execute()
check("select columns", r.data, [{"id": 1, "name": "Windows 7"}])
r = t("projects").select("projectName:name,settings->foo->>bar").eq("id", 4).execute()
check("rename and json path", r.data, [{"projectName": "OSX", "bar": "baz"}])
r = t("projects").select("*").eq("id", 2).execute()
check(
    "select star types",
    r.data,
    [{"id": 2, "name": "Windows 10", "client_id": 1, "budget": 2000.25,
      "settings": {"foo": {"int": 2, "bar": "qux"}, "tags": ["b"]}, "logo": None, "active": True}],
)

# filters
check("eq", ids(t("projects").select("id").eq("client_id", 2).order("id").execute()), [3, 4])
check("neq", ids(t("projects").select("id").neq("id", 1).order("id").execute()), [2, 3, 4, 5])
check("gt", ids(t("projects").select("id").gt("id", 3).order("id").execute()), [4, 5])
check("gte", ids(t("projects").select("id").gte("id", 3).order("id").execute()), [3, 4, 5])
check("lt", ids(t("projects").select("id").lt("id", 2).order("id").execute()), [1])
check("lte", ids(t("projects").select("id").lte("id", 2).order("id").execute()), [1, 2])
check("like", ids(t("projects").select("id").like("name", "Windows*").order("id").execute()), [1, 2])
check("ilike", ids(t("projects").select("id").ilike("name", "windows*").order("id").execute()), [1, 2])
check("like_any_of", ids(t("projects").select("id").like_any_of("name", "IOS,OSX").order("id").execute()), [3, 4])
check("ilike_all_of", ids(t("projects").select("id").ilike_all_of("name", "*W*,*10").order("id").execute()), [2])
check("in_", ids(t("projects").select("id").in_("id", [1, 3, 5]).order("id").execute()), [1, 3, 5])
check("in_ quoted", ids(t("names").select("id").in_("name", ["Hebdon, John", "棋圍"]).order("id").execute()), [1, 3])
check("is_ None", ids(t("projects").select("id").is_("budget", None).execute()), [3])
check("is_ True", ids(t("projects").select("id").is_("active", True).order("id").execute()), [1, 2, 4])
check("not_", ids(t("projects").select("id").not_.eq("id", 1).order("id").execute()), [2, 3, 4, 5])
check("not_ is_", ids(t("projects").select("id").not_.is_("client_id", None).order("id").execute()), [1, 2, 3, 4])
check("or_", ids(t("projects").select("id").or_("id.eq.1,name.eq.OSX").order("id").execute()), [1, 4])
check("or_ nested", ids(t("projects").select("id").or_("id.eq.5,and(client_id.eq.1,budget.gt.1600)").order("id").execute()), [2, 5])
check("match", ids(t("projects").select("id").match({"client_id": 1, "active": True}).order("id").execute()), [1, 2])
check("filter", ids(t("projects").select("id").filter("name", "imatch", "^w.*7$").execute()), [1])
check("json filter", ids(t("projects").select("id").eq("settings->foo->>bar", "baz").order("id").execute()), [1, 4])
check("contains list", ids(t("projects").select("id").contains("settings->tags", ["b"]).order("id").execute()), [1, 2])
check("contains dict", ids(t("projects").select("id").contains("settings", {"foo": {"bar": "baz"}}).order("id").execute()), [1, 4])
check("contained_by", ids(t("projects").select("id").contained_by("settings->tags", ["b", "c"]).order("id").execute()), [2, 4])
check("ov", ids(t("projects").select("id").ov("settings->tags", ["a", "z"]).execute()), [1])
check("not_ contains", ids(t("projects").select("id").not_.contains("settings->tags", ["a"]).order("id").execute()), [2, 4])

# full-text search (FTS5): an external-content index over articles, and an FTS5 table (notes)
art = lambda: t("articles").select("id").order("id")  # noqa: E731
check("fts", ids(art().fts("body", "fat & !rat").execute()), [1])
check("fts prefix", ids(art().fts("body", "supernova:*").execute()), [2])
check("plfts", ids(art().plfts("body", "fat cats").execute()), [1, 3])
check("phfts", ids(art().phfts("body", "fat cats").execute()), [1])
check("wfts", ids(art().wfts("body", '"fat rat" or supernovae -galaxy').execute()), [3])
check("text_search config", ids(art().text_search("body", "cat", {"config": "english"}).execute()), [1, 3])
check("text_search plain", ids(art().text_search("body", "lean cat", {"type": "plain"}).execute()), [3])
check("text_search phrase", ids(art().text_search("body", "cat lean", {"type": "phrase"}).execute()), [])
check("text_search web_search", ids(art().text_search("body", "fat -rat", {"type": "web_search", "config": "english"}).execute()), [1])
check("not_ fts", ids(art().not_.fts("body", "fat").execute()), [2])
check("or_ fts", ids(t("notes").select("id").or_("title.fts.rats,body.fts.dogs").order("id").execute()), [2, 3])
expect_error("fts without an FTS5 index", lambda: t("projects").select("id").fts("name", "windows"), "PGRST127")
expect_error("fts syntax error", lambda: art().fts("body", "fat cat"), "42601")

# order
check("order desc", ids(t("projects").select("id").order("budget", desc=True).execute()), [3, 2, 1, 4, 5])
check("order nullsfirst", ids(t("projects").select("id").order("budget", nullsfirst=True).execute()), [3, 5, 4, 1, 2])
check("order two keys", ids(t("projects").select("id").order("client_id", desc=True).order("id").execute()), [5, 3, 4, 1, 2])

# limit, offset, range, count
check("limit", ids(t("items").select("id").order("id").limit(3).execute()), [1, 2, 3])
check("offset", ids(t("items").select("id").order("id").limit(2).offset(5).execute()), [6, 7])
check("range", ids(t("items").select("id").order("id").range(3, 5).execute()), [4, 5, 6])
r = t("items").select("id", count=CountMethod.exact).order("id").limit(2).execute()
check("count exact", (ids(r), r.count), ([1, 2], 15))
r = t("items").select("id", count=CountMethod.planned).limit(1).execute()
check("count planned", r.count, 15)
r = t("items").select("id", count=CountMethod.estimated).limit(1).execute()
check("count estimated", r.count, 15)
r = t("items").select("*", count=CountMethod.exact, head=True).execute()
check("head count", r.count, 15)

# single, maybe_single
r = t("projects").select("id,name").eq("id", 3).single().execute()
check("single", r.data, {"id": 3, "name": "IOS"})
expect_error("single with many rows", lambda: t("projects").select("id").gt("id", 1).single(), "PGRST116")
r = t("projects").select("id").eq("id", 99).maybe_single().execute()
check("maybe_single none", r, None)

# csv
r = t("names").select("id,name").order("id").lte("id", 2).csv().execute()
check("csv", r.data, 'id,name\n1,"Hebdon, John"\n2,"Zoë Ñandú"')

# errors come back as APIError with PostgREST codes
expect_error("unknown table", lambda: t("nope").select("*"), "PGRST205")
expect_error("unknown column", lambda: t("projects").select("nope"), "42703")
expect_error("bad cast", lambda: t("projects").select("id::nosuch"), "42704")

# resource embedding: select() strings with embeds
r = t("projects").select("id,clients(name)").in_("id", [1, 5]).order("id").execute()
check("embed many-to-one", r.data, [{"id": 1, "clients": {"name": "Microsoft"}}, {"id": 5, "clients": None}])
r = t("clients").select("name", "projects(id)").eq("id", 2).order("id", foreign_table="projects").execute()
check("embed one-to-many", r.data, [{"name": "Apple", "projects": [{"id": 3}, {"id": 4}]}])
r = t("users").select("name,tasks(id)").eq("id", 2).order("id", foreign_table="tasks").limit(2, foreign_table="tasks").execute()
check("embed many-to-many", r.data, [{"name": "Michael Scott", "tasks": [{"id": 5}, {"id": 6}]}])
r = t("clients").select("name,projects!inner(name)").eq("projects.name", "IOS").execute()
check("embed inner", r.data, [{"name": "Apple", "projects": [{"name": "IOS"}]}])
r = t("messages").select("body,sender:users!messages_sender_id_fkey(name)").eq("id", 3).execute()
check("embed alias and hint", r.data, [{"body": "hey", "sender": {"name": "Dwight Schrute"}}])
r = t("projects").select("name,...clients(client:name)").eq("id", 1).execute()
check("embed spread", r.data, [{"name": "Windows 7", "client": "Microsoft"}])
r = t("tasks").select("id,projects(name,clients(name))").eq("id", 5).execute()
check("embed nested", r.data, [{"id": 5, "projects": {"name": "IOS", "clients": {"name": "Apple"}}}])
r = t("projects").select("id,tasks()").not_.is_("tasks", None).order("id").execute()
check("embed not null filter", ids(r), [1, 2, 3, 4])
expect_error("embed ambiguous", lambda: t("users").select("messages(*)"), "PGRST201")
expect_error("embed no relationship", lambda: t("projects").select("nope(*)"), "PGRST200")

# RPC (the server serves crates/server/tests/fixtures/rpc): rpc() posts the arguments, or
# sends them in the query string with get=True; the result filters like a table.
r = client.rpc("projects_of", {"client_id": 1}).select("id", "name").order("id", desc=True).execute()
check("rpc post", r.data, [{"id": 2, "name": "Windows 10"}, {"id": 1, "name": "Windows 7"}])
r = client.rpc("projects_of", {"client_id": 2}, get=True).select("id").gt("id", 3).execute()
check("rpc get", r.data, [{"id": 4}])
r = client.rpc("projects_of", {"client_id": 1}, count=CountMethod.exact).select("id").limit(1).execute()
check("rpc count", (r.count, r.data), (2, [{"id": 1}]))
r = client.rpc("project_count", {"min_id": 2}).execute()
check("rpc scalar", r.data, 4)
expect_error("rpc unknown arguments", lambda: client.rpc("projects_of", {"client": 1}), "PGRST202")
expect_error("rpc bad value", lambda: client.rpc("projects_of", {"client_id": "x"}), "22P02")
expect_error("rpc write over get", lambda: client.rpc("add_client", {"name": "x"}, get=True), "25006")

# aggregates (the server runs with --aggregates-enabled), grouped by the other selected columns
r = t("projects").select("count()").execute()
check("aggregate count", r.data, [{"count": 5}])
r = (
    t("projects")
    .select("client_id", "total:budget.sum()", "budget.avg()", "id.max()", "id.min()")
    .not_.is_("client_id", None)
    .order("client_id")
    .execute()
)
check(
    "aggregate grouped",
    r.data,
    [{"client_id": 1, "total": 3500.75, "avg": 1750.375, "max": 2, "min": 1},
     {"client_id": 2, "total": 99.99, "avg": 99.99, "max": 4, "min": 3}],
)
r = t("projects").select("budget.avg()::int,budget::int.sum()").eq("client_id", 1).execute()
check("aggregate cast", r.data, [{"avg": 1750, "sum": 3500}])
r = t("clients").select("name,projects(count())").order("id").execute()
check("aggregate in embed", r.data, [{"name": "Microsoft", "projects": [{"count": 2}]},
                                     {"name": "Apple", "projects": [{"count": 2}]}])
r = t("tasks").select("project_id,count()", count=CountMethod.exact).order("project_id").limit(2).execute()
check("aggregate count exact", [r.data, r.count],
      [[{"project_id": 1, "count": 2}, {"project_id": 2, "count": 2}], 4])
expect_error("aggregate unknown column", lambda: t("projects").select("nope.sum()"), "42703")

# views
check("view", ids(t("projects_view").select("id").lt("budget", 100).order("id").execute()), [4, 5])

done()
