//! Calendar arithmetic for the wall clock (the RTC gives a date).

/// A UTC date and time (Gregorian, year >= 1970) as seconds since 1970.
pub fn unix_seconds(y: u64, m: u64, d: u64, h: u64, min: u64, s: u64) -> u64 {
    // Days from civil: count from 0000-03-01 so leap days end each year.
    let (y, m) = if m <= 2 { (y - 1, m + 9) } else { (y, m - 3) };
    let era = y / 400;
    let yoe = y - era * 400;
    let doy = (153 * m + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    days * 86_400 + h * 3600 + min * 60 + s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_dates() {
        assert_eq!(unix_seconds(1970, 1, 1, 0, 0, 0), 0);
        assert_eq!(unix_seconds(2000, 3, 1, 0, 0, 0), 951_868_800);
        assert_eq!(unix_seconds(2026, 11, 25, 22, 11, 59), 1_795_644_719);
        assert_eq!(unix_seconds(2024, 2, 29, 12, 0, 0), 1_709_208_000);
    }
}
