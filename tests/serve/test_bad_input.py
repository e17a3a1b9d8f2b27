"""Bad requests get the right status in the calling API's error shape, and the server keeps serving:
invalid JSON, unknown model, bad fields, a prompt over the context, a wrong or missing key, a full
queue, a client that disconnects mid-stream; and while the model loads, 503."""

from __future__ import annotations

import threading
import time

import anthropic
import httpx
import openai
import pytest
import uvicorn

from tests.serve.conftest import serve, server_env

KEY = "serve-test-key-0123"


@pytest.fixture(scope="module")
def server(random_checkpoint, tmp_path_factory):
    env = {**server_env(), "SERVE_TEST_KEY": KEY}
    with serve(
        random_checkpoint,
        tmp_path_factory.mktemp("bad"),
        "--api-key-env",
        "SERVE_TEST_KEY",
        "--max-concurrency",
        "1",
        "--max-queue",
        "1",
        env=env,
    ) as s:
        yield s


def post(server, path: str, body, key: str | None = KEY, **headers) -> httpx.Response:
    if key is not None:
        headers["authorization"] = f"Bearer {key}"
    content = body if isinstance(body, bytes) else None
    return httpx.post(
        server.url + path, json=None if content else body, content=content, headers=headers, timeout=120
    )


def ok_completion(server) -> None:
    reply = post(server, "/v1/completions", {"model": server.model, "prompt": "hi", "max_tokens": 2})
    assert reply.status_code == 200, reply.text


def test_invalid_json_is_a_400_in_each_apis_shape(server):
    reply = post(server, "/v1/chat/completions", b"{not json")
    assert reply.status_code == 400
    assert reply.json()["error"]["type"] == "invalid_request_error"
    reply = post(server, "/v1/messages", b"[1, 2")
    assert reply.status_code == 400
    assert reply.json() == {
        "type": "error",
        "error": {"type": "invalid_request_error", "message": reply.json()["error"]["message"]},
    }
    ok_completion(server)


def test_deep_nesting_and_an_oversized_body_are_refused_and_the_server_goes_on(server):
    deep = b'{"model": "m", "messages": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    reply = post(server, "/v1/chat/completions", deep)
    assert reply.status_code == 400 and "nests deeper" in reply.json()["error"]["message"], reply.text
    huge = b'{"prompt": "' + b"x" * (33 << 20) + b'"}'
    reply = post(server, "/v1/completions", huge)
    assert reply.status_code == 413, reply.text
    ok_completion(server)


def test_unknown_model_and_bad_fields_are_400s_that_name_the_problem(server):
    c = openai.OpenAI(base_url=server.v1, api_key=KEY, max_retries=0)
    with pytest.raises(openai.BadRequestError) as unknown:
        c.chat.completions.create(model="gpt-9", messages=[{"role": "user", "content": "hi"}])
    assert "gpt-9" in unknown.value.message and unknown.value.code == "model_not_found"
    with pytest.raises(openai.BadRequestError) as bad:
        c.chat.completions.create(
            model=server.model, messages=[{"role": "user", "content": "hi"}], temperature=7
        )
    assert "temperature" in bad.value.message
    reply = post(
        server,
        "/v1/chat/completions",
        {"model": server.model, "messages": [{"role": "wizard", "content": "x"}]},
    )
    assert reply.status_code == 400 and "role" in reply.json()["error"]["message"]
    reply = post(
        server, "/v1/messages", {"model": server.model, "messages": [{"role": "user", "content": "x"}]}
    )
    assert reply.status_code == 400 and "max_tokens" in reply.json()["error"]["message"]
    ok_completion(server)


def test_a_prompt_over_the_context_is_a_400(server):
    c = openai.OpenAI(base_url=server.v1, api_key=KEY, max_retries=0)
    context = c.models.list().data[0].model_extra["max_model_len"]
    with pytest.raises(openai.BadRequestError) as too_long:
        c.completions.create(model=server.model, prompt=[7] * (context + 5), max_tokens=4)
    assert too_long.value.code == "context_length_exceeded"
    assert str(context) in too_long.value.message
    ok_completion(server)


def test_a_wrong_or_missing_key_is_a_401(server):
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=server.v1, api_key="wrong", max_retries=0).models.list()
    assert post(server, "/v1/completions", {"prompt": "x"}, key=None).status_code == 401
    wrong = anthropic.Anthropic(base_url=server.url, api_key="wrong", max_retries=0)
    with pytest.raises(anthropic.AuthenticationError) as refused:
        wrong.messages.create(model=server.model, max_tokens=2, messages=[{"role": "user", "content": "x"}])
    assert refused.value.body["error"]["type"] == "authentication_error"
    # Anthropic-style clients may send the key as x-api-key or as a Bearer token.
    right = anthropic.Anthropic(base_url=server.url, api_key=KEY, max_retries=0)
    assert (
        right.messages.create(
            model=server.model, max_tokens=2, messages=[{"role": "user", "content": "x"}]
        ).content
        is not None
    )
    bearer = anthropic.Anthropic(base_url=server.url, auth_token=KEY, max_retries=0)
    assert (
        bearer.messages.create(
            model=server.model, max_tokens=2, messages=[{"role": "user", "content": "x"}]
        ).usage.output_tokens
        >= 1
    )


def test_unknown_route_is_a_404(server):
    reply = httpx.get(server.url + "/v1/engines", headers={"authorization": f"Bearer {KEY}"})
    assert reply.status_code == 404 and reply.json()["error"]["code"] == "not_found"


def _engine(server) -> dict:
    return httpx.get(server.url + "/health").json()["engine"]


def test_a_full_queue_is_a_429_and_a_client_that_disconnects_frees_its_slot(server):
    long = {
        "model": server.model,
        "prompt": [11, 12, 13],
        "stream": True,
        "ignore_eos": True,
        "max_tokens": 30000,
    }
    waiting_reply: list[httpx.Response] = []
    client = httpx.Client(headers={"authorization": f"Bearer {KEY}"}, timeout=120)
    with client.stream("POST", server.url + "/v1/completions", json=long) as running:
        assert running.status_code == 200
        lines = running.iter_lines()  # kept: a discarded iterator would close the stream
        next(lines)  # it is generating: the one slot is taken
        short = {"model": server.model, "prompt": [21, 22], "max_tokens": 3}
        waiter = threading.Thread(
            target=lambda: waiting_reply.append(client.post(server.url + "/v1/completions", json=short))
        )
        waiter.start()
        deadline = time.monotonic() + 60
        while _engine(server)["queued"] < 1:  # the second request is queued behind the first
            assert not waiting_reply and time.monotonic() < deadline, waiting_reply and waiting_reply[0].text
            time.sleep(0.05)
        full = post(server, "/v1/completions", short)
        assert full.status_code == 429
        assert full.json()["error"]["type"] == "rate_limit_error"
        blocked = post(
            server,
            "/v1/messages",
            {"model": server.model, "max_tokens": 2, "messages": [{"role": "user", "content": "x"}]},
        )
        assert blocked.status_code == 429 and blocked.json()["error"]["type"] == "rate_limit_error"
    # Leaving the `with` closed the stream mid-generation: the request is cancelled, its slot goes to
    # the queued request, which completes (it would otherwise wait for 30000 tokens).
    waiter.join(timeout=120)
    assert waiting_reply and waiting_reply[0].status_code == 200, waiting_reply
    ok_completion(server)
    assert _engine(server)["active"] == 0


def test_a_client_that_gives_up_waiting_for_a_whole_reply_frees_its_slot(server):
    long = {"model": server.model, "prompt": [31, 32], "ignore_eos": True, "max_tokens": 30000}
    with pytest.raises(httpx.ReadTimeout):
        post_with = httpx.Client(
            headers={"authorization": f"Bearer {KEY}"}, timeout=httpx.Timeout(60, read=1)
        )
        post_with.post(server.url + "/v1/completions", json=long)
    post_with.close()
    deadline = time.monotonic() + 60  # far less than 30000 tokens take
    while _engine(server)["active"]:
        assert time.monotonic() < deadline, "the abandoned request is still generating"
        time.sleep(0.1)
    ok_completion(server)


def test_while_the_model_loads_every_model_route_answers_503(tmp_path):
    """The app before its model is loaded (the state `mmx-agent serve` answers from while it loads)."""
    from agent.serve.app import build_app
    from agent.serve.state import ServerState

    server = uvicorn.Server(
        uvicorn.Config(build_app(ServerState(["m2"])), host="127.0.0.1", port=0, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.02)
    url = f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}"
    try:
        assert httpx.get(url + "/health").json() == {"status": "loading"}
        models = httpx.get(url + "/v1/models")
        assert models.status_code == 503 and models.json()["error"]["code"] == "model_loading"
        chat = httpx.post(url + "/v1/chat/completions", json={"messages": [{"role": "user", "content": "x"}]})
        assert chat.status_code == 503
        messages = httpx.post(
            url + "/v1/messages", json={"max_tokens": 1, "messages": [{"role": "user", "content": "x"}]}
        )
        assert messages.status_code == 503 and messages.json()["error"]["type"] == "overloaded_error"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
