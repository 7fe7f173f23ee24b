"""Errors come back with Knock's status codes and body shape, and the SDK maps them."""

from __future__ import annotations

from typing import Any, Callable

import knockapi
import pytest
import requests

from support import Hark, feed_step, unique


def assert_error_body(body: Any, status: int) -> None:
    assert isinstance(body, dict), body
    assert set(body) >= {"code", "message", "status", "type"}, body
    assert body["status"] == status
    assert isinstance(body["code"], str) and body["code"]
    assert isinstance(body["message"], str) and body["message"]
    assert isinstance(body["type"], str) and body["type"]


def test_wrong_api_key_is_401(hark: Hark) -> None:
    wrong = knockapi.Knock(api_key="sk_test_not_a_real_key", base_url=hark.base_url, max_retries=0)
    with pytest.raises(knockapi.AuthenticationError) as caught:
        wrong.users.get(unique("anyone"))
    assert caught.value.status_code == 401
    assert_error_body(caught.value.body, 401)


def test_missing_api_key_is_401(hark: Hark) -> None:
    response = requests.get(f"{hark.base_url}/v1/users/{unique('anyone')}", timeout=10)
    assert response.status_code == 401
    assert_error_body(response.json(), 401)


def test_public_key_cannot_use_secret_routes(hark: Hark) -> None:
    public = knockapi.Knock(api_key=hark.public_key, base_url=hark.base_url, max_retries=0)
    with pytest.raises(knockapi.APIStatusError) as caught:
        public.users.list()
    assert caught.value.status_code in (401, 403)
    assert_error_body(caught.value.body, caught.value.status_code)


def test_unknown_workflow_is_404(client: knockapi.Knock) -> None:
    with pytest.raises(knockapi.NotFoundError) as caught:
        client.workflows.trigger(unique("no-such-workflow"), recipients=[unique("user")])
    assert_error_body(caught.value.body, 404)


def test_invalid_trigger_body_is_422(
    client: knockapi.Knock, make_workflow: Callable[..., str]
) -> None:
    workflow = make_workflow([feed_step()], prefix="errors")
    user_id = unique("user")
    with pytest.raises(knockapi.UnprocessableEntityError) as caught:
        client.workflows.trigger(
            workflow, recipients=[user_id], extra_body={"recipients": "not-a-list"}
        )
    assert_error_body(caught.value.body, 422)

    # Bad input changes nothing: no run was created.
    assert client.workflow_recipient_runs.list(workflow=workflow).items == []
