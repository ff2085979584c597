//! Integration tests of ringws live in `tests/`; helpers shared by them go here.
