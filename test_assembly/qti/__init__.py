"""QTI 3.0 (and 2.1/2.2 on import) content packages."""

from test_assembly.qti.package import ImportResult, Problem, export_package, import_package
from test_assembly.qti.safe import PackageError

__all__ = ["ImportResult", "PackageError", "Problem", "export_package", "import_package"]
