//! Calendar tiers against restic's own documented examples (doc/060_forget.rst), and the
//! boundaries: month ends, a leap day, ISO week 53, hours, the oldest kept, unlimited.

use super::*;

fn at(s: &str) -> Time {
    chrono::DateTime::parse_from_rfc3339(s).unwrap().timestamp()
}

fn tiers(t: &[(Period, Count)]) -> Tiers {
    Tiers(t.to_vec())
}

/// The times kept, newest first, with their reasons.
fn kept(t: &Tiers, times: &[&str]) -> Vec<(String, String)> {
    let ts: Vec<Time> = times.iter().map(|s| at(s)).collect();
    (t.apply(&ts).into_iter().zip(times))
        .filter(|(r, _)| !r.is_empty())
        .map(|(r, s)| (s.to_string(), r.join(", ")))
        .collect()
}

#[test]
fn restic_twelve_sundays_keep_daily_four() {
    // "one backup every Sunday for 12 weeks ... forget --keep-daily 4 will keep the last four".
    let sundays: Vec<String> = (0..12)
        .map(|w| {
            let d =
                chrono::NaiveDate::from_ymd_opt(2019, 11, 17).unwrap() - chrono::Duration::weeks(w);
            format!("{d}T11:00:00Z")
        })
        .collect();
    let times: Vec<&str> = sundays.iter().map(String::as_str).collect();
    let k = kept(&tiers(&[(Period::Daily, Count::Last(4))]), &times);
    let days: Vec<&str> = k.iter().map(|(t, _)| &t[..10]).collect();
    assert_eq!(
        days,
        ["2019-11-17", "2019-11-10", "2019-11-03", "2019-10-27"]
    );
    assert_eq!(k[0].1, "daily 2019-11-17");
}

#[test]
fn restic_a_hundred_years_of_dailies() {
    // "--keep-daily 7 --keep-weekly 5 --keep-monthly 12 --keep-yearly 75 would keep the most
    // recent 7 daily snapshots and 4 last-day-of-the-week ones (since the 7 dailies already
    // include 1 weekly). Additionally, 12 or 11 last-day-of-the-month snapshots ... 75 or 74".
    // Ending on Sunday 2026-12-20: December's monthly and 2026's yearly are that day's daily.
    let end = chrono::NaiveDate::from_ymd_opt(2026, 12, 20).unwrap();
    let times: Vec<Time> = (0..36_525)
        .map(|d| {
            (end - chrono::Duration::days(d))
                .and_hms_opt(12, 0, 0)
                .unwrap()
        })
        .map(|t| t.and_utc().timestamp())
        .collect();
    let t = tiers(&[
        (Period::Daily, Count::Last(7)),
        (Period::Weekly, Count::Last(5)),
        (Period::Monthly, Count::Last(12)),
        (Period::Yearly, Count::Last(75)),
    ]);
    let reasons = t.apply(&times);
    let count = |word: &str| {
        (reasons.iter().flatten())
            .filter(|r| r.starts_with(word))
            .count()
    };
    assert_eq!(
        (
            count("daily"),
            count("weekly"),
            count("monthly"),
            count("yearly")
        ),
        (7, 5, 12, 75)
    );
    let only = |word: &str| {
        (reasons.iter())
            .filter(|r| r.len() == 1 && r[0].starts_with(word))
            .count()
    };
    assert_eq!(
        (only("weekly"), only("monthly"), only("yearly")),
        (4, 11, 74)
    );
    assert_eq!(
        reasons.iter().filter(|r| !r.is_empty()).count(),
        7 + 4 + 11 + 74
    );
    assert!(reasons.iter().flatten().all(|r| !r.starts_with("oldest")));
}

#[test]
fn month_ends_and_a_leap_day() {
    let times = [
        "2024-03-01T00:00:00Z",
        "2024-02-29T23:59:59Z",
        "2024-02-29T08:00:00Z",
        "2024-02-28T23:00:00Z",
        "2023-02-28T12:00:00Z",
    ];
    let monthly = kept(&tiers(&[(Period::Monthly, Count::Last(3))]), &times);
    assert_eq!(
        monthly,
        [
            ("2024-03-01T00:00:00Z".into(), "monthly 2024-03".into()),
            ("2024-02-29T23:59:59Z".into(), "monthly 2024-02".into()),
            ("2023-02-28T12:00:00Z".into(), "monthly 2023-02".into()),
        ]
    );
    let daily = kept(&tiers(&[(Period::Daily, Count::Unlimited)]), &times);
    let days: Vec<&str> = daily.iter().map(|(t, _)| t.as_str()).collect();
    assert_eq!(
        days,
        [
            "2024-03-01T00:00:00Z",
            "2024-02-29T23:59:59Z",
            "2024-02-28T23:00:00Z",
            "2023-02-28T12:00:00Z"
        ]
    );
}

#[test]
fn iso_week_53_belongs_to_the_iso_year() {
    // 2020-12-31 (Thursday) and 2021-01-03 (Sunday) are both 2020-W53; 2021-01-04 is 2021-W01.
    let times = [
        "2021-01-04T09:00:00Z",
        "2021-01-03T09:00:00Z",
        "2020-12-31T09:00:00Z",
    ];
    let weekly = kept(&tiers(&[(Period::Weekly, Count::Last(2))]), &times);
    assert_eq!(
        weekly,
        [
            ("2021-01-04T09:00:00Z".into(), "weekly 2021-W01".into()),
            ("2021-01-03T09:00:00Z".into(), "weekly 2020-W53".into()),
        ]
    );
    // Years are calendar years: the 31st is 2020's newest.
    let yearly = kept(&tiers(&[(Period::Yearly, Count::Last(2))]), &times);
    assert_eq!(
        yearly[1],
        ("2020-12-31T09:00:00Z".into(), "yearly 2020".into())
    );
    assert_eq!(Period::Weekly.of(at("2026-12-28T00:00:00Z")), "2026-W53");
}

#[test]
fn hours_run_from_00_to_59_and_a_tier_with_counts_left_keeps_the_oldest() {
    let times = [
        "2026-12-06T11:00:00Z",
        "2026-12-06T10:59:59Z",
        "2026-12-06T10:00:00Z",
    ];
    let hourly = kept(&tiers(&[(Period::Hourly, Count::Last(2))]), &times);
    assert_eq!(hourly.len(), 2);
    assert_eq!(hourly[1].1, "hourly 2026-12-06T10");
    // Twelve months asked, one month has tags: its newest, and the oldest for history.
    let monthly = kept(&tiers(&[(Period::Monthly, Count::Last(12))]), &times);
    assert_eq!(
        monthly,
        [
            ("2026-12-06T11:00:00Z".into(), "monthly 2026-12".into()),
            (
                "2026-12-06T10:00:00Z".into(),
                "oldest monthly 2026-12".into()
            ),
        ]
    );
    assert_eq!(
        tiers(&[
            (Period::Daily, Count::Last(7)),
            (Period::Yearly, Count::Unlimited)
        ])
        .describe(),
        "daily 7, yearly unlimited"
    );
}
