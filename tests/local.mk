# tests/: shared test helpers; unit tests live in each module's fragment.
