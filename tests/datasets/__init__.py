"""Tests of the custom Kedro datasets."""
