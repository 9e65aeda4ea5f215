"""Hand-written fakes of external systems (Labelbox SDK client...), shared by the tests."""
