"""Routes in the models folder: `make route`, `make promote`, `make rollback` and `make routes` edit and show
<MODELS_DIR>/routes.json, which the API re-reads on its next request (app/README.md, "Routes, shadows and promotion").

Every change keeps the route as it was in `previous`, so `rollback` can put it back; a second rollback swaps
again. The new file is checked with the API's own model (app/routes.py) against the model files in the folder
before it is written, and written atomically (a temporary file in the folder, then os.replace): the API reads
the old file or the new one, never half of one.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

# The routes model lives in the repository's app/, beside this folder (in the API image: /srv/app).
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pydantic import ValidationError

from app.routes import ROUTES_FILE, RoutesFile, RouteSpec, first_error
from app.rules import SUFFIX, is_model_name


def models_dir(given: str | None) -> Path:
    """--models-dir, else MODELS_DIR, else models/ under the repository, as `make serve LOCAL=1` serves."""
    path = Path(given or os.environ.get("MODELS_DIR", "").strip() or ROOT / "models").expanduser()
    if not path.is_dir():
        raise SystemExit(f"No models folder at {path}: train first (make train), or set MODELS_DIR.")
    return path


def model_stems(folder: Path) -> list[str]:
    """The model files the API would serve, without .pkl."""
    stems = (path.name.removesuffix(SUFFIX) for path in folder.glob(f"*{SUFFIX}") if path.is_file())
    return sorted(stem for stem in stems if is_model_name(stem))


def read(folder: Path) -> RoutesFile:
    """The file as it is (its shape checked, not the folder): an empty one when there is none."""
    path = folder / ROUTES_FILE
    try:
        content = path.read_bytes()
    except FileNotFoundError:
        return RoutesFile()
    try:
        return RoutesFile.parse(content)
    except ValueError as error:
        raise SystemExit(f"{path} is refused ({error}): fix it or remove it first.") from None


def write(folder: Path, routes: RoutesFile) -> None:
    """Checked against the folder's model files, then replaced atomically."""
    text = routes.to_json()
    try:
        RoutesFile.parse(text, model_stems(folder))
    except ValueError as error:
        raise SystemExit(f"Not written: {error}.") from None
    descriptor, temporary = tempfile.mkstemp(prefix=f".{ROUTES_FILE}.", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(descriptor, "w") as file:
            file.write(text)
            file.flush()
            os.fsync(file.fileno())
        os.chmod(temporary, 0o644)  # mkstemp's 0600 would hide it from an API running as another user
        os.replace(temporary, folder / ROUTES_FILE)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def changed(routes: RoutesFile, name: str, new: RouteSpec | None) -> RoutesFile:
    """The file with route `name` set to new (None: removed), and the route as it was kept as its previous."""
    current, previous = dict(routes.routes), dict(routes.previous)
    old = current.pop(name, None)
    if new is not None:
        current[name] = new
    if old is not None:
        previous[name] = old
    else:
        previous.pop(name, None)
    return RoutesFile(routes=current, previous=previous)


def weights(text: str) -> dict[str, float]:
    """Weights as written on the command line, "logistic_regression=90 random_forest=10" (or commas), as a dict."""
    parsed: dict[str, float] = {}
    for item in text.replace(",", " ").split():
        name, equals, weight = item.partition("=")
        try:
            parsed[name] = float(weight)
        except ValueError:
            raise SystemExit(f"{item!r} is not name=weight (logistic_regression=90).") from None
        if not equals:
            raise SystemExit(f"{item!r} is not name=weight (logistic_regression=90).")
    return parsed


def set_route(folder: Path, name: str, variants: str, shadows: str, sticky: str | None) -> str:
    spec = {"variants": weights(variants), "shadows": shadows.replace(",", " ").split(), "sticky_header": sticky}
    try:
        new = RouteSpec.model_validate(spec)
    except ValidationError as error:
        raise SystemExit(f"Not written: {first_error(error)}.") from None
    write(folder, changed(read(folder), name, new))
    return f"Route {name}: {describe(new)}."


def promote(folder: Path, name: str, model: str) -> str:
    routes = read(folder)
    old = routes.routes.get(name)
    if old is None:
        raise SystemExit(f"No route {name!r} in {folder / ROUTES_FILE}: make route ROUTE={name} VARIANTS=... first.")
    model = model.removesuffix(SUFFIX)
    if model not in old.files():
        raise SystemExit(f"{model!r} is neither a variant nor a shadow of route {name}: {', '.join(old.files())}.")
    shadows = [shadow for shadow in old.shadows if shadow != model]
    new = RouteSpec(variants={model: 100}, shadows=shadows, sticky_header=old.sticky_header)
    write(folder, changed(routes, name, new))
    return f"Route {name}: {describe(new)} (was {describe(old)}; make rollback ROUTE={name} puts it back)."


def rollback(folder: Path, name: str) -> str:
    routes = read(folder)
    previous = routes.previous.get(name)
    if previous is None:
        raise SystemExit(f"Route {name!r} has no previous state to roll back to in {folder / ROUTES_FILE}.")
    write(folder, changed(routes, name, previous))
    return f"Route {name}: {describe(previous)} (rolled back; rolling back again restores what it replaced)."


def show(folder: Path) -> str:
    path = folder / ROUTES_FILE
    if not path.exists():
        return f"No routes: {path} does not exist (make route ROUTE=... VARIANTS=... writes it)."
    lines = [f"{path}:"]
    content = path.read_bytes()
    try:
        RoutesFile.parse(content, model_stems(folder))
    except ValueError as error:
        lines.append(f"  refused by the API now ({error}): it serves the last good routes it read")
    try:
        routes = RoutesFile.parse(content)
    except ValueError:
        return "\n".join(lines)
    lines += [f"  {name}: {describe(spec)}" for name, spec in routes.routes.items()] or ["  no routes"]
    lines += [f"  {name}, previous (make rollback): {describe(spec)}" for name, spec in routes.previous.items()]
    return "\n".join(lines)


def describe(spec: RouteSpec) -> str:
    total = sum(spec.variants.values())
    parts = [", ".join(f"{name} {weight / total:.0%}" for name, weight in spec.variants.items())]
    if spec.shadows:
        parts.append(f"shadows {', '.join(spec.shadows)}")
    if spec.sticky_header:
        parts.append(f"sticky on {spec.sticky_header}")
    return "; ".join(parts)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--models-dir", help="the models folder (env MODELS_DIR, default models/)")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("show", help="print the routes and their previous states")
    route = commands.add_parser("set", help="set a route's variants, keeping the route as it was to roll back to")
    route.add_argument("route")
    route.add_argument("--variants", required=True, help='"logistic_regression=90 random_forest=10"')
    route.add_argument("--shadows", default="", help='model files that answer in the shadow: "svc"')
    route.add_argument("--sticky", default=None, help="the header whose value keeps a client on one variant")
    promoted = commands.add_parser("promote", help="one variant at 100 %%, the route as it was kept")
    promoted.add_argument("route")
    promoted.add_argument("model")
    rolled = commands.add_parser("rollback", help="the route as it was before its last change")
    rolled.add_argument("route")
    args = parser.parse_args(argv)
    folder = models_dir(args.models_dir)
    if args.command == "show":
        print(show(folder))
    elif args.command == "set":
        print(set_route(folder, args.route, args.variants, args.shadows, args.sticky or None))
    elif args.command == "promote":
        print(promote(folder, args.route, args.model))
    else:
        print(rollback(folder, args.route))


if __name__ == "__main__":
    main()
