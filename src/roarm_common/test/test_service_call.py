"""roarm_common.service_call.call_service against a real rclpy service: the answer, one deadline for a missing or
silent service, resending an idempotent request whose first answer never comes, and the poll hook."""

import threading
import time

import pytest
import rclpy
from rclpy.callback_groups import ReentrantCallbackGroup
from rclpy.context import Context
from rclpy.node import Node
from std_srvs.srv import SetBool

from roarm_common.executors import QueueAwareMultiThreadedExecutor
from roarm_common.service_call import call_service


@pytest.fixture
def graph():
    """(server node, client node); both spun by one executor thread, as a node's own spin would."""
    context = Context()
    rclpy.init(context=context)
    server, client = Node("switch_server", context=context), Node("switch_client", context=context)
    executor = QueueAwareMultiThreadedExecutor(num_threads=3, context=context)
    executor.add_node(server)
    executor.add_node(client)
    spinner = threading.Thread(target=executor.spin, daemon=True)
    spinner.start()
    yield server, client
    executor.shutdown(timeout_sec=1.0)
    rclpy.shutdown(context=context)


def _serve(server, first_answer_delay: float = 0.0):
    """A SetBool server echoing the request; its first answer is held back ``first_answer_delay`` seconds."""
    calls = []

    def on_request(request, response):
        calls.append(request.data)
        if len(calls) == 1:
            time.sleep(first_answer_delay)
        response.success, response.message = True, f"call {len(calls)}: {request.data}"
        return response

    server.create_service(SetBool, "switch", on_request, callback_group=ReentrantCallbackGroup())
    return calls


def test_the_answer_comes_back(graph):
    server, node = graph
    calls = _serve(server)
    reply = call_service(node.create_client(SetBool, "switch"), SetBool.Request(data=True), timeout=5.0)
    assert (reply.success, reply.message, calls) == (True, "call 1: True", [True])


def test_a_missing_service_times_out_naming_it(graph):
    _, node = graph
    with pytest.raises(TimeoutError, match="service switch did not appear within 0.5 s"):
        call_service(node.create_client(SetBool, "switch"), SetBool.Request(data=True), timeout=0.5)


def test_a_silent_service_times_out(graph):
    server, node = graph
    calls = _serve(server, first_answer_delay=3.0)
    client = node.create_client(SetBool, "switch")
    with pytest.raises(TimeoutError, match="service switch did not answer within 1 s"):
        call_service(client, SetBool.Request(data=True), timeout=1.0)
    assert calls == [True]  # sent once: no resend without resend_after


def test_an_idempotent_request_is_sent_again_when_its_answer_is_late(graph):
    server, node = graph
    calls = _serve(server, first_answer_delay=3.0)
    reply = call_service(node.create_client(SetBool, "switch"), SetBool.Request(data=True), timeout=5.0,
                         resend_after=0.3)
    assert reply.message == "call 2: True"  # the resent request's answer, not the held-back first one
    assert calls == [True, True]


def test_poll_can_abort_the_wait(graph):
    _, node = graph

    class ServerDied(Exception):
        pass

    def poll():
        raise ServerDied

    with pytest.raises(ServerDied):
        call_service(node.create_client(SetBool, "switch"), SetBool.Request(data=True), timeout=5.0, poll=poll)
