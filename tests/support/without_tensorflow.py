"""Run the deepsuite CLI as if TensorFlow were not installed (the GPU machine's situation).

Usage: python -m tests.support.without_tensorflow <deepsuite args...>
A meta-path finder placed first makes `import tensorflow` (and TFDS) fail with ModuleNotFoundError,
the way it fails where the package is absent.
"""
import importlib.abc
import sys

BLOCKED = ("tensorflow", "tensorflow_datasets", "tf_keras", "tensorboard")


class HideTensorFlow(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path=None, target=None):
        if fullname.split(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {fullname!r} (hidden by the test)", name=fullname)
        return None


sys.meta_path.insert(0, HideTensorFlow())

if __name__ == "__main__":
    from deepsuite.app.cli import main

    code = main(sys.argv[1:])
    assert "tensorflow" not in sys.modules, "TensorFlow was imported despite being hidden"
    sys.exit(code)
