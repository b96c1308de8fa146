"""Package discovery for pyproject.toml: every package under python/kbsemcom, installed as
gnuradio.kbsemcom.* (setuptools' own find cannot add that prefix). Everything else is in
pyproject.toml."""
from setuptools import find_packages, setup

setup(packages=["gnuradio.kbsemcom"] + [f"gnuradio.kbsemcom.{p}"
                                         for p in find_packages("python/kbsemcom")],
      package_dir={"gnuradio.kbsemcom": "python/kbsemcom"})
