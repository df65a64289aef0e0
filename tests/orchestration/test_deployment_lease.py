"""Issue 13, finding 12: a dead run's slot of a ``concurrency_limit: 1`` deployment is released when its lease
runs out, on a real local Prefect server.

The server runs with the shortest initial deployment lease Prefect accepts
(``PREFECT_SERVER_CONCURRENCY_INITIAL_DEPLOYMENT_LEASE_DURATION=30``, its minimum) and a 1 s repossessor loop.
Run A takes the slot (Scheduled -> Pending) and nothing ever renews its lease, as when the process that would
run it is SIGKILLed before its flow engine starts renewing. Run B is refused the slot
(``AwaitingConcurrencySlot``) until the lease expires, then gets it without anyone touching A.

What this does not cover: once a flow engine runs, Prefect 3.9's ``flow_engine.py`` renews the lease for
300 s at a time (a constant, not this setting), so a run SIGKILLed while running holds the slot for up to
300 s after its last renewal, plus one repossessor loop.
"""
from __future__ import annotations

import subprocess
import time

import pytest

from .conftest import PREFECT_CLI, base_env, free_port, wait_until_healthy

pytestmark = pytest.mark.slow

LEASE_SECONDS = 30  # Prefect's minimum for server.concurrency.initial_deployment_lease_duration


@pytest.fixture(scope="module")
def short_lease_server(tmp_path_factory):
    home = tmp_path_factory.mktemp("prefect_short_lease")
    port = free_port()
    api_url = f"http://127.0.0.1:{port}/api"
    env = base_env(home)
    env.update(
        PREFECT_API_DATABASE_CONNECTION_URL=f"sqlite+aiosqlite:///{home / 'prefect.db'}",
        PREFECT_SERVER_CONCURRENCY_INITIAL_DEPLOYMENT_LEASE_DURATION=str(LEASE_SECONDS),
        PREFECT_SERVER_SERVICES_REPOSSESSOR_LOOP_SECONDS="1",
    )
    with open(home / "server.log", "w") as log:
        server = subprocess.Popen([PREFECT_CLI, "server", "start", "--host", "127.0.0.1", "--port", str(port)],
                                  env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_until_healthy(server, api_url, home / "server.log")
        yield api_url
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def test_a_dead_runs_slot_is_released_when_its_lease_runs_out(short_lease_server):
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings
    from prefect.states import Pending

    with temporary_settings({PREFECT_API_URL: short_lease_server}), get_client(sync_client=True) as client:
        flow_id = client.create_flow_from_name("lease_probe")
        deployment_id = client.create_deployment(flow_id, "lease-probe", concurrency_limit=1)
        dead = client.create_flow_run_from_deployment(deployment_id)
        taken = client.set_flow_run_state(dead.id, Pending())
        assert taken.status.value == "ACCEPT", taken.details
        lease_id = client.read_flow_run(dead.id).state.state_details.deployment_concurrency_lease_id
        assert lease_id is not None, "the slot is held without a lease"
        taken_at = time.monotonic()

        waiting = client.create_flow_run_from_deployment(deployment_id)
        refused = client.set_flow_run_state(waiting.id, Pending())
        assert refused.status.value == "REJECT" and refused.state.name == "AwaitingConcurrencySlot", refused

        while True:  # nothing touches the dead run: only its lease expiring can free the slot
            time.sleep(2)
            attempt = client.set_flow_run_state(waiting.id, Pending())
            if attempt.status.value == "ACCEPT":
                break
            assert time.monotonic() - taken_at < LEASE_SECONDS + 60, "the slot was not released after the lease ran out"
        released_after = time.monotonic() - taken_at
        print(f"slot released {released_after:.1f} s after the dead run took it (lease {LEASE_SECONDS} s)")
        assert released_after >= LEASE_SECONDS - 1
        assert client.read_flow_run(dead.id).state.type.value == "PENDING"  # the dead run itself was not touched
        limit = client.read_deployment(deployment_id).global_concurrency_limit
        assert limit.limit == 1 and limit.active_slots == 1  # the new run's slot, not two
