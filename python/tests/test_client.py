"""The futures API from Python, against a live stack."""

from __future__ import annotations

import concurrent.futures
import math
import sys
import threading

import funcs
import pytest

import warren


def test_submit_result_status_and_repr(client):
    f = client.submit(funcs.sleep, 0.5, pure=False)
    assert repr(f).startswith("<Future: pending, key: funcs:sleep-")
    assert f.status == "pending"
    assert f.result(timeout=30) == 0.5
    assert f.status == "finished" and f.done()
    assert repr(f) == f"<Future: finished, key: {f.key}>"
    assert "finished" in f._repr_html_()


def test_pure_submits_share_a_future_and_impure_ones_do_not(client):
    assert client.submit(funcs.inc, 10).key == client.submit(funcs.inc, 10).key
    assert client.submit(funcs.inc, 10, pure=False).key != client.submit(funcs.inc, 10).key
    assert client.submit(funcs.inc, 1, key="my-own-key").key == "my-own-key"


def test_map_and_gather_keep_input_order_and_shape(client):
    fs = client.map(funcs.inc, range(100))
    assert client.gather(fs) == list(range(1, 101))
    pairs = client.map(funcs.add, [1, 2, 3], [10, 20, 30])
    assert client.gather(pairs) == [11, 22, 33]
    nested = client.gather({"a": fs[0], "b": [fs[1], (fs[2],)], "c": 7})
    assert nested == {"a": 1, "b": [2, (3,)], "c": 7}


def test_futures_nested_in_arguments_are_dependencies(client):
    a, b, c = client.map(funcs.inc, [1, 2, 3])
    t = client.submit(funcs.total, [a, b, 100], {"x": c, "y": 1000})
    assert t.result(timeout=30) == 2 + 3 + 100 + 4 + 1000
    chain = client.submit(funcs.inc, 0)
    for _ in range(20):
        chain = client.submit(funcs.inc, chain)
    assert chain.result(timeout=60) == 21


def test_values_cross_as_json_and_other_values_as_themselves(client):
    value = {"none": None, "t": True, "i": -(2**63), "u": 2**64 - 1, "f": 1.5, "s": "é", "l": [1]}
    assert client.submit(funcs.echo, value).result(timeout=30) == value
    # A tuple is a tuple again (it used to come back a list).
    assert client.submit(funcs.echo, (1, (2, 3))).result(timeout=30) == (1, (2, 3))
    assert client.submit(funcs.echo, {1, 2}).result(timeout=30) == {1, 2}
    assert client.submit(funcs.echo, [1, {"k": 2**70}]).result(timeout=30) == [1, {"k": 2**70}]


@pytest.mark.parametrize(
    "arg, where, what",
    [
        (object(), "argument 1", "builtins.object"),
        ([1, {"k": 2**70}], "argument 1[1]['k']", "does not fit 64 bits"),
        ({1: "x"}, "argument 1", "int key"),
        ({1, 2}, "argument 1", "builtins.set"),
        (1 + 2j, "argument 1", "builtins.complex"),
    ],
)
def test_a_rust_function_takes_json_and_anything_else_is_named_at_submit(client, arg, where, what):
    # Rust functions read JSON (and bytes and numpy arrays, as stored values:
    # test_interop.py): anything else is refused before anything is sent,
    # naming its place (Python functions take it).
    with pytest.raises(TypeError) as e:
        client.submit("identity", arg)
    assert where in str(e.value) and what in str(e.value), str(e.value)


def test_a_float_json_cannot_carry_is_refused_for_rust_and_crosses_to_python(client):
    with pytest.raises(ValueError, match="argument 1 is nan"):
        client.submit("identity", math.nan)
    assert math.isnan(client.submit(funcs.echo, math.nan).result(timeout=30))


def test_a_result_json_cannot_carry_comes_back_as_itself(client):
    # Pickled by the worker, signed with the namespace key, checked here.
    v = client.submit(funcs.returns_object).result(timeout=30)
    assert v["fine"][:2] == [1, 2] and type(v["fine"][2]) is object
    assert client.submit(funcs.returns_big_int).result(timeout=30) == 2**70


def test_a_builtin_exception_comes_back_as_itself_with_the_workers_traceback(client):
    f = client.submit(funcs.divide, 1, 0)
    with pytest.raises(ZeroDivisionError) as e:
        f.result(timeout=30)
    err = e.value
    assert isinstance(err, warren.TaskError)
    assert (err.type, err.message, err.key) == ("ZeroDivisionError", "division by zero", f.key)
    text = str(err)
    assert 'funcs.py", line' in text and "in divide" in text and "return a / b" in text, text
    assert f"task {f.key} (function funcs:divide) on worker" in text
    assert f.status == "error"
    assert f.traceback() == err.traceback
    assert isinstance(f.exception(), ZeroDivisionError)


def test_a_user_defined_exception_comes_back_as_its_own_class(client):
    # The class is known here (its module is imported): `except Custom` works.
    f = client.submit(funcs.raise_custom, "boom")
    with pytest.raises(funcs.Custom) as e:
        f.result(timeout=30)
    assert isinstance(e.value, warren.TaskError)
    assert e.value.type == "funcs.Custom" and e.value.message == "boom"
    assert "raise Custom(message)" in str(e.value)


def test_an_exception_class_unknown_here_is_a_task_error_naming_it(client):
    # Nothing is imported for a name a worker sent.
    e = warren._errors.rebuild({"type": "nosuchmodule.Boom", "message": "m"}, "k")
    assert type(e) is warren.TaskError and e.type == "nosuchmodule.Boom"
    assert "nosuchmodule" not in sys.modules
    # Nor is a name that is not an exception class taken for one.
    assert type(warren._errors.rebuild({"type": "os.path", "message": ""}, "k")) is warren.TaskError


def test_an_error_propagates_to_dependents(client):
    bad = client.submit(funcs.divide, 1, 0)
    after = client.submit(funcs.inc, bad)
    with pytest.raises(ZeroDivisionError):
        after.result(timeout=30)


def test_retries_run_again_and_keep_earlier_errors(client):
    f = client.submit(funcs.divide, 1, 0, retries=2, pure=False)
    e = f.exception(timeout=60)
    assert isinstance(e, ZeroDivisionError)
    assert len(e.previous) == 2


def test_print_in_a_task_goes_to_the_log_not_the_protocol(client):
    assert (
        client.submit(funcs.prints, '{"ok": "not this"}').result(timeout=30) == '{"ok": "not this"}'
    )


def test_a_function_no_worker_serves_is_refused_naming_what_is_served(client):
    with pytest.raises(warren.UnservedFunction) as e:
        client.submit("funcs:no_such_function", 1)
    text = str(e.value)
    assert "funcs:inc" in text and "allow_unserved=True" in text, text
    with pytest.raises(warren.UnservedFunction, match="workers on queue python do"):
        client.submit("funcs:inc", 1, queue="default")
    # Any other callable travels as code, which these workers do not accept.
    with pytest.raises(warren.UnservedFunction, match="--accept-code"):
        client.submit(len, [1])


def test_task_returns_the_function_itself_with_its_registration():
    # No wrapper between a caller and the function: a local call (a task
    # calling a helper, a notebook cell) is an ordinary call.
    assert funcs.inc(1) == 2
    assert type(funcs.inc).__name__ == "function" and funcs.inc.__name__ == "inc"
    reg = warren.registration(funcs.inc)
    assert reg is not None and (reg.name, reg.queue) == ("funcs:inc", "python")
    assert reg.fn is funcs.inc and warren.registration(reg) is reg
    assert warren.registration(len) is None
    with pytest.raises(TypeError, match="module-level function"):
        warren.task(lambda x: x)


def test_a_notebook_function_says_why_workers_cannot_run_it(client):
    with pytest.raises(warren.UnservedFunction, match="cannot be imported by a worker"):
        client.submit("__main__:f")


def test_stock_rust_functions_and_python_functions_mix_in_one_dag(client):
    assert client.submit("count_primes_less_than", 5000).result(timeout=30) == 669
    rust = client.submit("inc", 1)
    py = client.submit(funcs.inc, rust)
    both = client.submit("add_them", py, client.submit(funcs.add, 10, 20))
    assert both.result(timeout=30) == 3 + 30
    # Many of both kinds at once: none lands on a worker without its function.
    mixed = client.map("inc", range(200), pure=False) + client.map(
        funcs.inc, range(200), pure=False
    )
    assert client.gather(mixed) == list(range(1, 201)) * 2


def test_wait_and_as_completed(client):
    fast = client.submit(funcs.sleep, 0.1, pure=False)
    fast.result(timeout=30)
    slow = client.submit(funcs.sleep, 3, pure=False)
    done, not_done = warren.wait([slow, fast], return_when="FIRST_COMPLETED")
    assert fast in done and slow in not_done
    with pytest.raises(TimeoutError):
        warren.wait([slow], timeout=0.2)
    fs = client.map(funcs.inc, range(20), pure=False)
    seen = list(warren.as_completed(fs))
    assert sorted(f.key for f in seen) == sorted(f.key for f in fs)
    pairs = list(warren.as_completed(client.map(funcs.inc, [5, 6]), with_results=True))
    assert sorted(r for _, r in pairs) == [6, 7]
    done, not_done = warren.wait([slow, fast])
    assert not_done == set()


def test_result_with_a_timeout_raises_timeout_error_and_the_task_goes_on(client):
    f = client.submit(funcs.sleep, 2, pure=False)
    with pytest.raises(TimeoutError, match=f.key):
        f.result(timeout=0.2)
    assert f.result(timeout=30) == 2


def test_cancel_cancels_the_future_and_its_dependents(client):
    f = client.submit(funcs.sleep, 30, pure=False)
    dep = client.submit(funcs.inc, f)
    f.cancel()
    with pytest.raises(concurrent.futures.CancelledError):
        f.result(timeout=30)
    assert dep.status == "cancelled"
    assert isinstance(dep.exception(timeout=30), concurrent.futures.CancelledError)


def test_add_done_callback_is_called_with_the_future(client):
    called = threading.Event()
    got = []
    f = client.submit(funcs.sleep, 0.2, pure=False)
    f.add_done_callback(lambda fut: (got.append(fut.result()), called.set()))
    assert called.wait(30)
    assert got == [0.2]


def test_progress_draws_a_bar_until_everything_is_final(client, capsys):
    fs = client.map(funcs.sleep, [0.05] * 10, pure=False)
    warren.progress(fs, notebook=False)
    err = capsys.readouterr().err
    assert "100% Completed | 10/10" in err
    assert all(f.done() for f in fs)
    # dask's progress(*futures): futures and lists of them, mixed.
    one, more = client.submit(funcs.inc, 1), client.map(funcs.inc, [2, 3])
    warren.progress(one, more, notebook=False)
    assert "100% Completed | 3/3" in capsys.readouterr().err


def test_release_drops_the_local_copy_not_the_result(client):
    f = client.submit(funcs.inc, 41, pure=False)
    assert f.result() == 42
    f.release()
    assert f._final is None
    assert client.future(f.key).result() == 42, "the result stays for other holders"
    assert f.result() == 42


def test_forget_drops_final_futures(client):
    f = client.submit(funcs.inc, 12345, pure=False)
    f.result(timeout=30)
    assert client.forget([f]) == 1


def test_repr_shows_the_namespace_schedulers_workers_and_the_ui(client, stack):
    text = repr(client)
    assert f"namespace={stack.namespace!r}" in text and "schedulers=1" in text
    assert "workers=3" in text
    page = client._repr_html_()
    assert (
        "http://127.0.0.1:15672/" in page
        and "funcs:inc" in page
        and "count_primes_less_than" in page
    )


def test_settings_are_checked_and_a_broker_down_is_a_clear_error(stack):
    with pytest.raises(TypeError, match='unexpected keyword argument "no_such_setting"'):
        warren.Client(no_such_setting=1)
    with pytest.raises(warren.WarrenError, match="RabbitMQ is not running at 127.0.0.1:1") as e:
        warren.Client("amqp://guest:guest@127.0.0.1:1/%2f", namespace=stack.namespace)
    assert isinstance(e.value, ConnectionError)
