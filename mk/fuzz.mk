# Fuzzing: hypothesis over the decoders (peer codec, WAL, snapshot reader, config parser) and
# schemathesis over docs/openapi.yaml (kv and admin tags) against a live local cluster.
#   make test-fuzz: the bounded run in `make test` (about 1-2 minutes, fixed schemathesis seed)
#   make fuzz FUZZ_EXAMPLES=5000 FUZZ_SECONDS=1800: a long run (random seed, printed)
FUZZ_EXAMPLES ?= 5000
FUZZ_SECONDS ?= 1200
FUZZ_API_EXAMPLES ?= 200
TEST_FUZZ_SEED ?= 20261203

TEST_TARGETS += test-fuzz

.PHONY: test-fuzz fuzz

## Bounded fuzzing (in make test): 150 hypothesis examples per decoder property, schemathesis
## with 15 cases per operation and at most 60 s, seed $(TEST_FUZZ_SEED).
test-fuzz: venv
	RAFTNODE_FUZZ_EXAMPLES=150 $(PY) -m pytest -q -p no:cacheprovider tests/fuzz/test_codecs.py
	RAFTNODE_SCHEMATHESIS_EXAMPLES=15 RAFTNODE_SCHEMATHESIS_SECONDS=60 \
		RAFTNODE_SCHEMATHESIS_SEED=$(TEST_FUZZ_SEED) \
		$(PY) -m pytest -q -p no:cacheprovider tests/fuzz/test_schemathesis.py

## A long fuzz run: FUZZ_EXAMPLES hypothesis examples per property, then schemathesis with
## FUZZ_API_EXAMPLES cases per operation for at most FUZZ_SECONDS (random seed, printed).
fuzz: venv
	RAFTNODE_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) $(PY) -m pytest -q -p no:cacheprovider tests/fuzz/test_codecs.py
	RAFTNODE_SCHEMATHESIS_EXAMPLES=$(FUZZ_API_EXAMPLES) RAFTNODE_SCHEMATHESIS_SECONDS=$(FUZZ_SECONDS) \
		$(PY) -m pytest -q -p no:cacheprovider -s tests/fuzz/test_schemathesis.py
