"""The page's files as served (server/routes/web.py): ETags per encoding, If-None-Match as
RFC 9110 reads it, and a bounded in-memory cache of the files."""

import gzip

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from latentwire.server.routes import web
from latentwire.server.routes.common import etag_matches


def test_if_none_match_takes_lists_weak_tags_and_star():
    assert etag_matches('"abc"', '"abc"')
    assert etag_matches('W/"abc"', '"abc"')
    assert etag_matches('"x", W/"abc" ,"y"', '"abc"')
    assert etag_matches("*", '"abc"')
    assert not etag_matches('"abcd", "ab"', '"abc"')
    assert not etag_matches("", '"abc"') and not etag_matches(None, '"abc"')


@pytest.fixture(scope="module")
def client():
    if web.asset_root() is None:
        pytest.skip("client/js/node_modules is missing: run `make js-deps`")
    app = FastAPI()
    app.include_router(web.router)
    return TestClient(app)


def test_gzip_and_plain_answers_have_their_own_etags(client):
    path = "/client/latentwire.js"
    plain = client.get(path, headers={"accept-encoding": "identity"})
    zipped = client.get(path, headers={"accept-encoding": "gzip"})
    assert plain.status_code == zipped.status_code == 200
    assert zipped.headers["content-encoding"] == "gzip" and "content-encoding" not in plain.headers
    assert zipped.content == plain.content  # httpx undoes the gzip
    tag = plain.headers["etag"]
    assert zipped.headers["etag"] == tag[:-1] + '-gz"'
    for response in (plain, zipped):
        assert response.headers["cache-control"] == "no-cache"
        assert response.headers["vary"] == "Accept-Encoding"
    # Each ETag revalidates its own encoding only, however a cache writes it.
    for header in (tag, f"W/{tag}", f'"other", {tag}'):
        again = client.get(path, headers={"accept-encoding": "identity", "if-none-match": header})
        assert again.status_code == 304 and again.headers["etag"] == tag
    for header, status in ((zipped.headers["etag"], 304), (tag, 200)):
        again = client.get(path, headers={"accept-encoding": "gzip", "if-none-match": header})
        assert again.status_code == status


def test_the_key_prompting_page_is_made_as_the_others(client):
    asset = web.load_asset(web.PAGE)
    prompting = web._with_key_prompt(asset)
    assert prompting is web._with_key_prompt(asset)  # made once per version of the page
    assert b'data-api-key="required"' in prompting.body
    assert gzip.decompress(prompting.gzipped) == prompting.body
    assert prompting.etag(False) != asset.etag(False) and prompting.etag(True).endswith('-gz"')


def test_the_file_cache_is_bounded():
    assert web._load.cache_info().maxsize == 64
    assert web._with_key_prompt.cache_info().maxsize is not None


def test_the_decoders_bare_imports_are_rewritten(client):
    text = client.get("/client/src/msgpack.js").text
    assert "'../node_modules/@msgpack/msgpack/dist.esm/index.mjs'" in text
    assert "'@msgpack/msgpack'" not in text
