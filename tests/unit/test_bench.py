"""tools/bench runs from the installed package: none of its code imports
the tests or pytest (a machine that measures need not have them)."""
import ast
import os
import subprocess
import sys

TOOLS = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))), "tools")
BENCH = os.path.join(TOOLS, "bench")


def test_bench_imports_neither_the_tests_nor_pytest():
    imported = set()
    for path in (BENCH, os.path.join(TOOLS, "bench_transfer.py"),
                 os.path.join(TOOLS, "bench_raw.py")):
        with open(path) as handle:
            imported |= _imports(ast.parse(handle.read()))
    assert "imgfac_nova" in imported  # the walk sees the children's imports
    assert not imported & {"tests", "pytest", "_pytest"}


def _imports(tree):
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module.split(".")[0])
    return imported


def test_bench_template_and_values_without_pytest(tmp_path):
    """The builds case's template and parameters, in a Python that cannot
    import pytest."""
    (tmp_path / "pytest.py").write_text("raise ImportError('no pytest')\n")
    # (as when it runs as a script, its directory is on the path)
    code = ("import runpy, sys; sys.path.insert(0, %r); "
            "bench = runpy.run_path(%r); "
            "text = bench['_template'](); "
            "assert '<rootpw>bench-root-secret</rootpw>' in text, text; "
            "values = bench['_build_values']('c', 'nova', {}); "
            "assert values['network'] == 'imgfac-net', values; "
            "assert 'pytest' not in sys.modules or "
            "sys.modules['pytest'] is None" % (TOOLS, BENCH))
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True,
        env=dict(os.environ, PYTHONPATH=str(tmp_path)), cwd=str(tmp_path))
    assert result.returncode == 0, result.stderr


def test_transfer_ratios_are_to_the_adjacent_baselines(monkeypatch):
    """Each round's ratio is the mean of the baseline samples just before
    and after ours over ours; the figure is their median, with the range,
    and the peak RSS the highest of ours and of the baselines'."""
    monkeypatch.syspath_prepend(TOOLS)
    import bench_transfer

    def sample(seconds, rss=70):
        return {"seconds": seconds, "peak_rss_mb": rss}

    def pair(raw, hashed):
        return {"raw": sample(raw), "raw_hashed": sample(hashed, 71)}
    samples = [(sample(10, 120), pair(8, 12), pair(12, 14)),  # 1.0, 1.3
               (sample(20, 125), pair(10, 20), pair(10, 20)),  # 0.5, 1.0
               (sample(5, 118), pair(4, 6), pair(6, 8))]  # 1.0, 1.4
    figures = {}
    [row] = bench_transfer._case_figures(figures, "push-1GiB", samples)
    assert figures["transfer_ratio"] == {"push-1GiB": 1.0}
    assert figures["transfer_ratio_verified"] == {"push-1GiB": 1.3}
    assert figures["peak_rss_mb"] == {"push-1GiB": 125}
    assert figures["transfer"]["push-1GiB"]["raw_peak_rss_mb"] == 71
    assert figures["transfer"]["push-1GiB"]["ratios"]["raw"] == [
        1.0, 0.5, 1.0]
    assert row == ("push-1GiB", "10.0 s (raw 9.0, sha512 13.0)",
                   "1.30x sha512 (1.00-1.40)",
                   "1.00x raw (0.50-1.00), 125 MB (raw 71)")
