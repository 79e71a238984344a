"""tools/bench runs from the installed package: none of its code imports
the tests or pytest (a machine that measures need not have them)."""
import ast
import os
import subprocess
import sys

BENCH = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))), "tools", "bench")


def test_bench_imports_neither_the_tests_nor_pytest():
    with open(BENCH) as handle:
        tree = ast.parse(handle.read())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module.split(".")[0])
    assert "imgfac_nova" in imported  # the walk sees the children's imports
    assert not imported & {"tests", "pytest", "_pytest"}


def test_bench_template_and_values_without_pytest(tmp_path):
    """The builds case's template and parameters, in a Python that cannot
    import pytest."""
    (tmp_path / "pytest.py").write_text("raise ImportError('no pytest')\n")
    code = ("import runpy, sys; bench = runpy.run_path(%r); "
            "text = bench['_template'](); "
            "assert '<rootpw>bench-root-secret</rootpw>' in text, text; "
            "values = bench['_build_values']('c', 'nova', {}); "
            "assert values['network'] == 'imgfac-net', values; "
            "assert 'pytest' not in sys.modules or "
            "sys.modules['pytest'] is None" % BENCH)
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True,
        env=dict(os.environ, PYTHONPATH=str(tmp_path)), cwd=str(tmp_path))
    assert result.returncode == 0, result.stderr
