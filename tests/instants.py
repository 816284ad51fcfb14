"""Named instants at which the tests run the agent, instead of whenever the suite happens to run.

Billing months are UTC calendar months; ERCOT's operating days are Central (America/Chicago),
with daylight saving: spring forward at 02:00 CST (08:00 UTC) on the second Sunday of March,
fall back at 02:00 CDT (07:00 UTC) on the first Sunday of November. Each instant names the path
it exercises; `DATE_SENSITIVE` is the set a date-dependent behaviour is checked at. `make
test-dates` runs the integration tests under faketime at such instants of the wall clock too
(the Makefile's TEST_DATES), for what runs on the system clock: the agent as its own process,
the observability test with Prometheus.
"""

from __future__ import annotations

from datetime import UTC, datetime

# An ordinary summer weekday afternoon in Central time, mid-month: nothing near a boundary.
MID_JUNE_AFTERNOON = datetime(2026, 6, 16, 19, 0, tzinfo=UTC)
# The first half hour of a billing month: the whole month's allowance ahead.
FIRST_HOUR_OF_DECEMBER = datetime(2026, 12, 1, 0, 30, tzinfo=UTC)
# Half an hour after the spring-forward change: 03:30 CDT, the night has 23 hours.
SPRING_FORWARD = datetime(2026, 3, 8, 8, 30, tzinfo=UTC)
# The repeated hour's second pass: 01:30 CST, after 01:30 CDT an hour earlier.
FALL_BACK = datetime(2026, 11, 1, 7, 30, tzinfo=UTC)
# Ten minutes before New Year in UTC (17:50 Central on New Year's Eve): a month and a year end.
NEW_YEAR_UTC = datetime(2026, 12, 31, 23, 50, tzinfo=UTC)
# Ten minutes before the end of January: the next billing month is February's short one.
END_OF_JANUARY = datetime(2027, 1, 31, 23, 50, tzinfo=UTC)

DATE_SENSITIVE = {
    "mid-june": MID_JUNE_AFTERNOON,
    "first-hour-of-december": FIRST_HOUR_OF_DECEMBER,
    "spring-forward": SPRING_FORWARD,
    "fall-back": FALL_BACK,
    "new-year-utc": NEW_YEAR_UTC,
    "end-of-january": END_OF_JANUARY,
}
