"""MEDVID_SENSOR_INTERVAL_S: the sensors' minimum interval, read when the code location loads."""

import importlib

import pytest

from medvid_assets.orchestration import sensors
from medvid_assets.orchestration.sensors import DEFAULT_SENSOR_INTERVAL_S, sensor_interval_s


def test_unset_or_blank_means_every_30_seconds():
    assert sensor_interval_s({}) == DEFAULT_SENSOR_INTERVAL_S == 30
    assert sensor_interval_s({"MEDVID_SENSOR_INTERVAL_S": " "}) == 30


def test_a_whole_number_of_seconds_is_taken():
    assert sensor_interval_s({"MEDVID_SENSOR_INTERVAL_S": "2"}) == 2


@pytest.mark.parametrize("value", ["0", "-5", "1.5", "soon"])
def test_anything_else_is_an_error_naming_the_variable(value):
    with pytest.raises(ValueError, match="MEDVID_SENSOR_INTERVAL_S must be a whole number"):
        sensor_interval_s({"MEDVID_SENSOR_INTERVAL_S": value})


def test_both_sensors_use_the_interval_of_the_environment_they_loaded_in(monkeypatch):
    monkeypatch.setenv("MEDVID_SENSOR_INTERVAL_S", "7")
    try:
        loaded = importlib.reload(sensors)
        assert loaded.landing_sensor.minimum_interval_seconds == 7
        assert loaded.pipeline_sensor.minimum_interval_seconds == 7
    finally:
        monkeypatch.delenv("MEDVID_SENSOR_INTERVAL_S")
        assert importlib.reload(sensors).landing_sensor.minimum_interval_seconds == 30
