"""Pieces of the radcloud-vs-Orthanc benchmark driven by ``bench/run_all.py``."""
