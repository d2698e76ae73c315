"""The side-by-side table: ratios, formatting, and the rounds behind each figure."""

from bench.report import (
    HEADERS,
    Measurement,
    Row,
    format_ratio,
    format_rows,
    format_table,
    ratio,
)


def test_ratio_and_its_format() -> None:
    assert ratio(300.0, 150.0) == 2.0
    assert ratio(1.0, 0.0) is None
    assert format_ratio(2.0) == "2.00x"
    assert format_ratio(0.456) == "0.46x"
    assert format_ratio(None) == "n/a"


def test_measurement_means_rates_and_medians_latencies() -> None:
    m = Measurement("raftnode")
    m.add(1000.0, 5.0, 20.0, 1)
    m.add(3000.0, 7.0, 40.0, 2)
    assert m.rate == 2000.0
    assert m.p50 == 6.0
    assert m.p99 == 30.0
    assert m.errors == 3
    assert len(m.to_json()["rounds"]) == 2  # type: ignore[arg-type]


def test_row_table_has_one_line_per_row_and_aligned_columns() -> None:
    a, b = Measurement("raftnode stale"), Measurement("etcd")
    a.add(12000.0, 4.0, 9.5, 0)
    b.add(6000.0, 8.0, 19.0, 0)
    row = Row("read stale follower", a, b, 64, target=2.0)
    assert row.ratio == 2.0
    assert row.to_json()["ratio"] == 2.0
    text = format_rows([row])
    lines = text.splitlines()
    assert len(lines) == 3
    assert lines[0].split()[0] == HEADERS[0]
    assert "12,000" in lines[2] and "6,000" in lines[2]
    assert "4.0/9.5" in lines[2]
    assert lines[2].count("2.00x") == 2  # the ratio and the target
    assert len(lines[1]) >= len(lines[2].rstrip())


def test_format_table_pads_to_the_widest_cell() -> None:
    text = format_table(["a", "b"], [["long name", "1"], ["x", "12345"]])
    assert text.splitlines() == [
        "a              b",
        "---------  -----",
        "long name      1",
        "x          12345",
    ]
