"""Generates the shipped sample datasets (deterministic: same seed, same bytes).

    python gateway/sample_data/generate.py [OUT_DIR]     # default: this folder

observations.csv  daily weather for 15 cities over two years (10,950 rows):
                  date, city, country, temp_c, humidity_pct, precipitation_mm,
                  wind_kph, rain, condition
stations.csv      the 15 weather stations: station_id, city, country, latitude,
                  longitude, elevation_m, active, installed_at
"""

from __future__ import annotations

import csv
import math
import random
import sys
from datetime import date, datetime, timedelta
from pathlib import Path

SEED = 402
FIRST_DAY = date(2023, 1, 1)
DAYS = 730

# city, country, latitude, longitude, elevation m, mean °C, seasonal swing °C,
# chance of a wet day, mean humidity %
CITIES = (
    ("Amsterdam", "NL", 52.37, 4.90, -2, 10.5, 7.0, 0.52, 81),
    ("Berlin", "DE", 52.52, 13.40, 34, 10.0, 9.5, 0.45, 74),
    ("Cairo", "EG", 30.04, 31.24, 23, 22.5, 7.0, 0.03, 56),
    ("Cape Town", "ZA", -33.92, 18.42, 42, 17.0, 4.5, 0.25, 72),
    ("Helsinki", "FI", 60.17, 24.94, 17, 6.0, 11.0, 0.48, 79),
    ("Lima", "PE", -12.05, -77.04, 154, 19.5, 3.5, 0.06, 83),
    ("Madrid", "ES", 40.42, -3.70, 667, 15.0, 9.0, 0.20, 58),
    ("Mumbai", "IN", 19.08, 72.88, 14, 27.5, 2.5, 0.35, 75),
    ("Oslo", "NO", 59.91, 10.75, 23, 6.5, 10.5, 0.45, 74),
    ("Reykjavik", "IS", 64.15, -21.94, 61, 5.0, 5.5, 0.60, 78),
    ("São Paulo", "BR", -23.55, -46.63, 760, 20.0, 3.5, 0.40, 78),
    ("Singapore", "SG", 1.35, 103.82, 15, 27.5, 0.8, 0.50, 84),
    ("Sydney", "AU", -33.87, 151.21, 39, 18.5, 5.0, 0.35, 68),
    ("Tokyo", "JP", 35.68, 139.69, 40, 16.0, 9.0, 0.38, 67),
    ("Toronto", "CA", 43.65, -79.38, 76, 8.5, 13.0, 0.40, 71),
)

OBSERVATION_COLUMNS = (
    "date", "city", "country", "temp_c", "humidity_pct", "precipitation_mm", "wind_kph", "rain", "condition"
)
STATION_COLUMNS = ("station_id", "city", "country", "latitude", "longitude", "elevation_m", "active", "installed_at")


def _one_decimal(value: float) -> str:
    text = f"{value:.1f}"
    return "0.0" if text == "-0.0" else text


def _observations(rng: random.Random) -> list[tuple[str, ...]]:
    rows = []
    for day_index in range(DAYS):
        day = FIRST_DAY + timedelta(days=day_index)
        # Coldest around 15 January in the north, 15 July in the south.
        season = math.cos(2 * math.pi * (day.timetuple().tm_yday - 15) / 365.25)
        for city, country, latitude, _lon, _elev, mean, swing, wet_chance, humidity in CITIES:
            sign = -1 if latitude >= 0 else 1
            temp = mean + sign * swing * season + rng.gauss(0, 2.5)
            wet = rng.random() < wet_chance
            precipitation = round(rng.expovariate(1 / 6.0), 1) if wet else 0.0
            if wet and precipitation == 0.0:
                precipitation = 0.1
            rain = precipitation > 0 and temp > 0.5
            if not wet:
                condition = rng.choice(("sunny", "sunny", "partly cloudy", "cloudy"))
            elif temp <= 0.5:
                condition = "snow"
            elif precipitation > 15:
                condition = "storm"
            else:
                condition = "rain"
            if condition in ("sunny", "partly cloudy") and humidity > 80 and rng.random() < 0.1:
                condition = "fog"
            rows.append(
                (
                    day.isoformat(),
                    city,
                    country,
                    _one_decimal(temp),
                    str(max(5, min(100, round(humidity + (12 if wet else -4) + rng.gauss(0, 6))))),
                    _one_decimal(precipitation),
                    _one_decimal(max(0.0, rng.gauss(14, 6) + (8 if condition == "storm" else 0))),
                    "true" if rain else "false",
                    condition,
                )
            )
    return rows


def _stations(rng: random.Random) -> list[tuple[str, ...]]:
    rows = []
    for number, (city, country, latitude, longitude, elevation, *_climate) in enumerate(CITIES, start=1):
        installed = datetime(2008, 1, 1) + timedelta(minutes=rng.randrange(0, 14 * 365 * 24 * 60))
        rows.append(
            (
                f"ST-{number:03d}",
                city,
                country,
                str(latitude),
                str(longitude),
                str(elevation),
                "false" if rng.random() < 0.2 else "true",
                installed.isoformat(timespec="seconds"),
            )
        )
    return rows


def _write(path: Path, header: tuple[str, ...], rows: list[tuple[str, ...]]) -> None:
    with path.open("w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)


def generate(out_dir: Path) -> list[Path]:
    rng = random.Random(SEED)
    out_dir.mkdir(parents=True, exist_ok=True)
    observations = out_dir / "observations.csv"
    stations = out_dir / "stations.csv"
    _write(observations, OBSERVATION_COLUMNS, _observations(rng))
    _write(stations, STATION_COLUMNS, _stations(rng))
    return [observations, stations]


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parent
    for written in generate(target):
        print(written)
