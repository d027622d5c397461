// The model zoo: one builder a family.
