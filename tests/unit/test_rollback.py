from novaimagebuilder import rollback


def _stack():
    done = []
    rb = rollback.Rollback()
    rb.push("server a", lambda: done.append("a"))
    rb.push("image result", lambda: done.append("image"), result=True)
    rb.push("keypair k", lambda: done.append("k"))
    return rb, done


def test_success_keeps_results_and_removes_temporaries_in_reverse():
    rb, done = _stack()
    assert rb.unwind(succeeded=True) == []
    assert done == ["k", "a"]
    assert rb.pending == []


def test_failure_removes_everything_in_reverse():
    rb, done = _stack()
    rb.unwind(succeeded=False)
    assert done == ["k", "image", "a"]


def test_failing_undo_does_not_stop_the_rest():
    rb, done = _stack()

    def broken():
        raise RuntimeError("409 conflict")
    rb.push("volume v", broken)
    left = rb.unwind(succeeded=False)
    assert left == ["volume v: 409 conflict"]
    assert done == ["k", "image", "a"]


def test_keep_on_failure_reports_and_keeps():
    rb, done = _stack()
    assert rb.unwind(succeeded=False, keep=True) == [
        "keypair k", "image result", "server a"]
    assert done == []


def test_undo_now():
    rb, done = _stack()
    entry = rb.push("server jeos", lambda: done.append("jeos"))
    rb.undo_now(entry)
    assert done == ["jeos"]
    rb.unwind(succeeded=False)
    assert done.count("jeos") == 1
