"""The shipped examples run as documented: examples/notes against the test database."""
import os
import time

from conftest import ROOT

WRITER = {"X-Api-Key": "example-writer-key"}
READER = {"X-Api-Key": "example-reader-key"}


def test_notes_example(start_host):
    h = start_host(os.path.join(ROOT, "examples", "notes"))
    deadline = time.time() + 10
    while h.get("/readyz").status != 200 and time.time() < deadline:
        time.sleep(0.05)
    assert h.get("/readyz").status == 200  # the on_start index hook ran
    assert h.post("/notes", {"title": "x"}).status == 401
    assert h.post("/notes", {"title": "x"}, headers=READER).status == 403
    r = h.post("/notes", {"title": ""}, headers=WRITER)
    assert r.status == 422 and r.json()["response_data"]["errors"][0]["field"] == "title"
    r = h.post("/notes", {"title": "first", "body": "hello"}, headers=WRITER)
    assert r.status == 201, r
    note = r.json()["response_data"]
    assert note["title"] == "first" and note["author"] == "writer" and len(note["id"]) == 24
    assert h.post("/notes", {"title": "second"}, headers=WRITER).status == 201
    r = h.get("/notes?limit=10", headers=READER)
    assert r.status == 200
    assert [n["title"] for n in r.json()["response_data"]] == ["second", "first"]
    assert h.get("/notes?limit=0", headers=READER).status == 422
    assert h.get("/notes/" + note["id"], headers=READER).json()["response_data"]["body"] == "hello"
    assert h.get("/notes/not-an-id", headers=READER).status == 404
    assert h.request("DELETE", "/notes/" + note["id"], headers=WRITER).status == 200
    assert h.get("/notes/" + note["id"], headers=READER).status == 404
