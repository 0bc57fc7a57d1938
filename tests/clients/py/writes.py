"""Drives a running sqlite-rest's write API with the real postgrest-py client (PyPI
`postgrest`, pinned in scripts/lib/tools.sh) and checks every answer, reading back through
the same client. Exits non-zero on the first mismatch.

Usage: writes.py BASE_URL TOKEN   (the server serves a fresh copy of the fixture of
crates/server/tests/fixtures/fixture.sql)
"""

from postgrest import CountMethod, ReturnMethod

from harness import check, connect, done, expect_error

client = connect()
t = client.from_

# insert: postgrest-py asks for the representation by default
r = t("clients").insert({"id": 3, "name": "IBM"}).execute()
check("insert", r.data, [{"id": 3, "name": "IBM"}])
r = t("clients").insert({"id": 4, "name": "Oracle"}, returning=ReturnMethod.minimal).execute()
check("insert minimal", r.data, [])
r = t("clients").select("id,name").gte("id", 3).order("id").execute()
check("select after insert", r.data, [{"id": 3, "name": "IBM"}, {"id": 4, "name": "Oracle"}])

# bulk insert with a count (postgrest-py sends ?columns= for lists)
r = t("stock").insert(
    [{"sku": "B-1", "qty": 1}, {"sku": "B-2", "qty": 2, "note": "two"}],
    count=CountMethod.exact,
).execute()
check("bulk insert count", r.count, 2)
check("bulk insert rows", [(x["sku"], x["qty"], x["note"]) for x in r.data],
      [("B-1", 1, None), ("B-2", 2, "two")])

# default_to_null=False: absent keys take the column default
r = t("stock").insert(
    [{"sku": "D-1"}, {"sku": "D-2", "qty": 7, "note": "x"}], default_to_null=False
).execute()
check("defaults", [(x["sku"], x["qty"], x["note"]) for x in r.data],
      [("D-1", 0, "none"), ("D-2", 7, "x")])

# upsert: merge on the primary key, ignore duplicates, on_conflict on a UNIQUE column
r = t("clients").upsert([{"id": 1, "name": "MSFT"}, {"id": 5, "name": "SAP"}]).execute()
check("upsert merge", r.data, [{"id": 1, "name": "MSFT"}, {"id": 5, "name": "SAP"}])
r = t("clients").upsert([{"id": 1, "name": "ignored"}, {"id": 6, "name": "HP"}],
                        ignore_duplicates=True).execute()
check("upsert ignore", r.data, [{"id": 6, "name": "HP"}])
check("upsert ignore kept", t("clients").select("name").eq("id", 1).execute().data,
      [{"name": "MSFT"}])
r = t("counters").upsert({"slug": "home", "hits": 42}, on_conflict="slug").execute()
check("upsert on_conflict", [(x["id"], x["slug"], x["hits"]) for x in r.data], [(1, "home", 42)])
r = t("counters").upsert([{"slug": "new", "hits": 1}], on_conflict="slug",
                         default_to_null=False).execute()
check("upsert default_to_null", [(x["slug"], x["hits"]) for x in r.data], [("new", 1)])
check("upsert insert got an id", isinstance(r.data[0]["id"], int), True)

# update and delete with filters
r = t("projects").update({"budget": 10}).eq("client_id", 2).execute()
check("update", sorted(x["id"] for x in r.data), [3, 4])
r = t("projects").update({"name": "none"}, count=CountMethod.exact).eq("id", 999).execute()
check("update nothing", (r.data, r.count), ([], 0))
r = t("messages").delete().eq("recipient_id", 1).execute()
check("delete", sorted(x["id"] for x in r.data), [2, 3])
check("select after delete", t("messages").select("id").execute().data, [{"id": 1}])
r = t("messages").delete(returning=ReturnMethod.minimal, count=CountMethod.exact).eq("id", 1).execute()
check("delete minimal count", (r.data, r.count), ([], 1))

# max_affected (handling=strict): over the limit fails and writes nothing
expect_error("max_affected", lambda: t("items").delete().lt("id", 10).max_affected(3), "PGRST124")
check("max_affected wrote nothing", len(t("items").select("id").execute().data), 15)
r = t("items").delete().lt("id", 3).max_affected(3).execute()
check("max_affected within", sorted(x["id"] for x in r.data), [1, 2])

# single() on writes
r = t("clients").insert({"id": 7, "name": "Dell"}).single().execute()
check("insert single", r.data, {"id": 7, "name": "Dell"})

# a response past the server's 1 MiB buffer streams (chunked, head first); the client reads it
# whole, count included
big = "x" * 1_500_000
t("no_pk").insert([{"a": big, "b": "big"}, {"a": big, "b": "big"}], returning=ReturnMethod.minimal).execute()
r = t("no_pk").select("a,b", count=CountMethod.exact).eq("b", "big").execute()
check("streamed read", (r.count, [(x["a"] == big, x["b"]) for x in r.data]), (2, [(True, "big"), (True, "big")]))

# errors come back as APIError with PostgREST codes
expect_error("duplicate key", lambda: t("clients").insert({"id": 1, "name": "dup"}), "23505")
expect_error("not null", lambda: t("stock").insert({"qty": 1}), "23502")
expect_error("check", lambda: t("stock").insert({"sku": "N", "qty": -1}), "23514")
expect_error("foreign key", lambda: t("stock").insert({"sku": "F", "client_id": 99}), "23503")
expect_error("unknown column", lambda: t("clients").insert({"id": 8, "nope": 1}), "PGRST204")
expect_error("unfiltered delete", lambda: t("clients").delete(), "21000")
expect_error("a bulk insert is atomic",
             lambda: t("stock").insert([{"sku": "M-1", "qty": 1}, {"sku": "M-1", "qty": 2}]),
             "23505")
check("atomic", t("stock").select("sku").eq("sku", "M-1").execute().data, [])

# A writing RPC: through the writer, its row returned, then readable.
r = client.rpc("add_client", {"name": "RPC Inc"}).execute()
check("rpc write", r.data["name"], "RPC Inc")
check("rpc write read back",
      t("clients").select("id").eq("name", "RPC Inc").execute().data, [{"id": r.data["id"]}])
expect_error("rpc write twice", lambda: client.rpc("add_client", {"name": "RPC Inc"}), "23505")

done()
