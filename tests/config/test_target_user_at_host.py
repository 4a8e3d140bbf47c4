"""`target.host: root@203.0.113.10` (ssh's own form) says where the user goes, not "label 'root@203'"."""

from __future__ import annotations

from tests.config.common import BASE, problems


def test_target_host_with_a_user_says_to_use_target_user() -> None:
    assert problems(BASE.replace("host: gw.example.com", "host: deploy@gw.example.com")) == [
        "deploy.yaml:2:3: target.host: 'deploy@gw.example.com' includes a user name; write host: gw.example.com"
        " and put deploy in target.user"
    ]
