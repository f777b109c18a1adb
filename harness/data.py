"""Generated data sets for tests and benchmarks."""

from __future__ import annotations


def dated_csv(rows: int = 300, seed: int = 0) -> str:
    """A CSV with a `date` column (ISO 8601: dates, date-times, UTC offsets, a few gaps), a number,
    a category and a label that depends on the weekday and the month, so the date's parts matter."""
    import random
    from datetime import datetime, timedelta

    rng = random.Random(seed)
    start = datetime(2023, 1, 1)
    lines = ["visited,temperature,station,busy"]
    for i in range(rows):
        moment = start + timedelta(days=rng.randrange(730), minutes=rng.randrange(24 * 60))
        shape = i % 4
        when = (
            moment.date().isoformat()
            if shape == 0
            else moment.isoformat(timespec="minutes")
            if shape == 1
            else moment.isoformat() + "Z"
            if shape == 2
            else moment.isoformat(sep=" ") + "+02:00"
        )
        if i % 23 == 5:
            when = ""  # a gap
        busy = moment.weekday() >= 5 or moment.month in (7, 8) or rng.random() < 0.1
        temperature = round(rng.gauss(15 + 10 * (moment.month in (6, 7, 8)), 4), 2)
        lines.append(f"{when},{temperature},{rng.choice('abc')},{'yes' if busy else 'no'}")
    return "\n".join(lines) + "\n"
