"""The original tool's import path, ``from visualizer.visualizer import get_local``, works as it did."""

import subprocess
import sys


def test_the_original_module_path_gives_the_same_get_local_and_imports_nothing_heavy():
    code = (
        "import sys\n"
        "from visualizer.visualizer import get_local\n"
        "import visualizer\n"
        "assert get_local is visualizer.get_local\n"
        "@get_local('attn_map')\n"
        "def attention(x):\n"
        "    attn_map = [v * 2 for v in x]\n"
        "    return sum(attn_map)\n"
        "get_local.activate()\n"
        "attention([1, 2])\n"
        "print(get_local.cache['attention'], sorted(m for m in ('torch', 'numpy') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[[2, 4]] []"
