"""The deployment files agree with each other and with the settings they start.

No Docker engine is needed: docker-compose.yml and the Dockerfile are read and checked, and the
platform scripts, gunicorn config and production settings are run as subprocesses the same way the
image runs them.
"""

from __future__ import annotations

import ast
import os
import re
import secrets
import shlex
import socket
import stat
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import urlparse

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
PLATFORM = ROOT / "platform"
COMPOSE = ROOT / "docker-compose.yml"
DOCKERFILE = PLATFORM / "Dockerfile"
ENV_EXAMPLE = ROOT / ".env.example"
APP_DIR = "/app"  # WORKDIR of the image: where the repository root is copied
APP_SERVICES = ("web", "worker", "beat", "migrate")
PYTHON = sys.executable
VENV_BIN = str(Path(PYTHON).parent)

PRODUCTION_ENV = {
    "DJANGO_SECRET_KEY": secrets.token_urlsafe(64),
    "DATABASE_URL": "postgres://u:p@localhost/db",
    "REDIS_URL": "redis://localhost:6379/0",
    "DJANGO_ALLOWED_HOSTS": "example.org",
}
# Values for the ${...} references in docker-compose.yml, as an operator's .env would give them.
COMPOSE_ENV = {
    "DJANGO_SECRET_KEY": secrets.token_urlsafe(64),
    "DJANGO_ALLOWED_HOSTS": "assay.example.org",
    "POSTGRES_PASSWORD": "s3cr3tpassword",
}
INTERPOLATION = re.compile(r"\$\$|\$\{(?P<name>\w+)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}")


class MissingVariableError(Exception):
    pass


def interpolate(value: str, env: dict[str, str]) -> str:
    """Resolve ${NAME}, ${NAME:-default} and ${NAME:?message} the way docker compose does."""

    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name, op, arg = match.group("name"), match.group("op"), match.group("arg")
        current = env.get(name)
        unset = current is None or (op is not None and op.startswith(":") and current == "")
        if op in (":?", "?") and unset:
            raise MissingVariableError(f"{name}: {arg}")
        if op in (":-", "-") and unset:
            return arg
        return current or ""

    return INTERPOLATION.sub(replace, value)


def minimal_env(**extra: str) -> dict[str, str]:
    """A clean environment for subprocesses: nothing leaks in from the test run."""
    return {
        "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '/usr/bin:/bin')}",
        "HOME": os.environ.get("HOME", "/tmp"),
        "LANG": "C.UTF-8",
        "PYTHONDONTWRITEBYTECODE": "1",
        **extra,
    }


def manage(*args: str, env: dict[str, str], timeout: int = 180) -> subprocess.CompletedProcess:
    return subprocess.run(
        [PYTHON, "manage.py", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def in_repo(path_in_image: str) -> Path:
    """The repository file an absolute /app/... path in the image refers to."""
    assert path_in_image.startswith(f"{APP_DIR}/"), path_in_image
    return ROOT / path_in_image.removeprefix(f"{APP_DIR}/")


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


@pytest.fixture(scope="module")
def services(compose) -> dict:
    return compose["services"]


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, with continuation lines joined and comments dropped."""
    joined = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    pairs = []
    for line in joined.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            pairs.append((keyword.upper(), rest.strip()))
    return pairs


def settings_env_names() -> set[str]:
    """Names passed as the first argument to env(...), env.bool(...), env.db(...) etc."""
    names = set()
    for path in (ROOT / "config" / "settings").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Call) or not node.args:
                continue
            func = node.func
            is_env = (isinstance(func, ast.Name) and func.id == "env") or (
                isinstance(func, ast.Attribute)
                and isinstance(func.value, ast.Name)
                and func.value.id == "env"
            )
            first = node.args[0]
            if is_env and isinstance(first, ast.Constant) and isinstance(first.value, str):
                names.add(first.value)
    return names


def env_example_entries() -> dict[str, str]:
    entries = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        match = re.match(r"^([A-Z][A-Z0-9_]*)=(.*)$", line)
        if match:
            entries[match.group(1)] = match.group(2)
    return entries


# --- docker-compose.yml -----------------------------------------------------------------------


def test_compose_defines_the_production_processes_and_backing_services(services):
    expected = {"web", "worker", "beat", "migrate", "postgres", "redis"}

    missing = expected - set(services)

    assert not missing, f"docker-compose.yml lacks services: {sorted(missing)}"
    assert services["postgres"]["image"].split(":")[0] == "postgres"
    assert services["postgres"]["image"].split(":")[1].startswith("16")
    assert services["redis"]["image"].split(":")[1].startswith("7")


def test_compose_app_services_share_one_image_and_the_production_settings(services):
    app = {name: services[name] for name in APP_SERVICES}

    images = {name: service["image"] for name, service in app.items()}
    dockerfiles = {name: service["build"]["dockerfile"] for name, service in app.items()}

    assert len(set(images.values())) == 1, images
    assert set(dockerfiles.values()) == {"platform/Dockerfile"}
    assert (ROOT / services["web"]["build"]["context"] / "platform" / "Dockerfile").is_file()
    for name, service in app.items():
        settings_module = service["environment"]["DJANGO_SETTINGS_MODULE"]
        assert settings_module == "config.settings.production", name


def test_compose_commands_run_executable_scripts_from_platform(services):
    expected = {
        "web": "start-web.sh",
        "worker": "start-worker.sh",
        "beat": "start-beat.sh",
        "migrate": "release.sh",
    }

    for name, script in expected.items():
        service = services[name]
        command = in_repo(service["command"][0])
        entrypoint = in_repo(service["entrypoint"][0])

        assert command == PLATFORM / script, name
        assert entrypoint == PLATFORM / "entrypoint.sh", name
        for path in (command, entrypoint):
            assert path.is_file(), path
            assert os.access(path, os.X_OK), f"{path} is not executable"


def test_compose_database_and_broker_urls_point_at_the_compose_services(services):
    for name in APP_SERVICES:
        environment = services[name]["environment"]

        database = urlparse(interpolate(environment["DATABASE_URL"], COMPOSE_ENV))
        broker = urlparse(interpolate(environment["REDIS_URL"], COMPOSE_ENV))

        assert database.scheme in ("postgres", "postgresql"), name
        assert database.hostname in services
        assert "postgres" in services[database.hostname]["image"]
        assert database.password == COMPOSE_ENV["POSTGRES_PASSWORD"]
        assert broker.scheme == "redis", name
        assert broker.hostname in services
        assert "redis" in services[broker.hostname]["image"]


def test_compose_database_url_matches_the_postgres_container(services):
    postgres_env = {
        key: interpolate(value, COMPOSE_ENV)
        for key, value in services["postgres"]["environment"].items()
    }

    database = urlparse(interpolate(services["web"]["environment"]["DATABASE_URL"], COMPOSE_ENV))

    assert database.username == postgres_env["POSTGRES_USER"]
    assert database.password == postgres_env["POSTGRES_PASSWORD"]
    assert database.path.lstrip("/") == postgres_env["POSTGRES_DB"]


@pytest.mark.parametrize("variable", ["DJANGO_SECRET_KEY", "DJANGO_ALLOWED_HOSTS"])
def test_compose_refuses_to_start_without_required_variables(services, variable):
    incomplete = {key: value for key, value in COMPOSE_ENV.items() if key != variable}

    for name in ("web", "worker", "beat"):
        raw = services[name]["environment"][variable]

        with pytest.raises(MissingVariableError):
            interpolate(raw, incomplete)
        with pytest.raises(MissingVariableError):
            interpolate(raw, {**incomplete, variable: ""})
        assert interpolate(raw, COMPOSE_ENV) == COMPOSE_ENV[variable]


def test_compose_healthchecks_gate_the_start_order(services):
    app_processes = ("web", "worker", "beat")

    for backing in ("postgres", "redis"):
        assert services[backing]["healthcheck"]["test"], backing
    for name in app_processes:
        depends_on = services[name]["depends_on"]
        assert depends_on["postgres"]["condition"] == "service_healthy", name
        assert depends_on["redis"]["condition"] == "service_healthy", name
        assert depends_on["migrate"]["condition"] == "service_completed_successfully", name
    assert services["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert services["migrate"]["restart"] == "no"


def test_migrations_run_in_the_release_step_only():
    release = (PLATFORM / "release.sh").read_text()

    starters = {name: (PLATFORM / name).read_text() for name in PLATFORM.glob("start-*.sh")}

    assert "manage.py migrate --noinput" in release
    for name, text in starters.items():
        assert "migrate" not in text, f"{name} must not run migrations"


def test_compose_media_volume_is_shared_by_web_and_worker(compose, services):
    def media_mounts(name: str) -> set[str]:
        root = services[name]["environment"]["ASSAY_MEDIA_ROOT"]
        return {
            mount.split(":")[0]
            for mount in services[name].get("volumes", [])
            if mount.split(":")[1] == root
        }

    web, worker = media_mounts("web"), media_mounts("worker")

    shared = web & worker
    assert shared, "web and worker must mount the same volume at ASSAY_MEDIA_ROOT"
    assert shared <= set(compose["volumes"]), "the media volume must be a named volume"
    assert {"postgres-data", "redis-data"} <= set(compose["volumes"])


def test_compose_runs_a_single_beat(services):
    replicas = services["beat"].get("deploy", {}).get("replicas", 1)

    assert replicas == 1


# --- platform/ scripts and image --------------------------------------------------------------


def test_platform_scripts_are_executable_strict_bash():
    scripts = sorted(PLATFORM.glob("*.sh"))

    assert {path.name for path in scripts} >= {
        "entrypoint.sh",
        "start-web.sh",
        "start-worker.sh",
        "start-beat.sh",
        "release.sh",
    }
    for path in scripts:
        text = path.read_text()
        assert path.stat().st_mode & stat.S_IXUSR, f"{path.name} is not executable (chmod +x)"
        assert text.startswith("#!/usr/bin/env bash\n"), path.name
        assert "set -euo pipefail" in text, path.name
        syntax = subprocess.run(["bash", "-n", str(path)], capture_output=True, text=True)
        assert syntax.returncode == 0, f"{path.name}: {syntax.stderr}"


def test_start_scripts_exec_the_expected_processes():
    web = (PLATFORM / "start-web.sh").read_text()
    worker = (PLATFORM / "start-worker.sh").read_text()
    beat = (PLATFORM / "start-beat.sh").read_text()

    assert "exec gunicorn config.wsgi -c platform/gunicorn.conf.py" in web
    assert "exec celery -A config.celery_app worker" in worker
    assert "default,quality,exports" in worker
    assert "exec celery -A config.celery_app beat" in beat


def test_platform_is_not_a_python_package():
    assert not (PLATFORM / "__init__.py").exists()


def test_stdlib_platform_module_still_wins_from_the_repo_root():
    code = "import platform, uuid; print(platform.__file__); print(platform.system())"

    result = subprocess.run(
        [PYTHON, "-c", code], cwd=ROOT, capture_output=True, text=True, env=minimal_env()
    )

    assert result.returncode == 0, result.stderr
    module_file, system = result.stdout.splitlines()
    assert not module_file.startswith(str(PLATFORM)), module_file
    assert system  # e.g. "Linux"


def test_dockerfile_builds_a_non_root_image_from_pyproject():
    instructions = dockerfile_instructions()
    by_keyword: dict[str, list[str]] = {}
    for keyword, args in instructions:
        by_keyword.setdefault(keyword, []).append(args)

    runs = " ".join(by_keyword["RUN"])

    assert by_keyword["FROM"] == ["python:3.11-slim"]
    assert by_keyword["USER"][-1] not in ("root", "0")
    assert "pip install ." in runs
    assert "collectstatic --noinput" in runs
    assert by_keyword["WORKDIR"][-1] == APP_DIR
    for copy in by_keyword["COPY"]:
        for source in copy.split()[:-1]:
            assert (ROOT / source).exists(), f"COPY {source}: not in the build context"
    entrypoint = yaml.safe_load(by_keyword["ENTRYPOINT"][-1])
    command = yaml.safe_load(by_keyword["CMD"][-1])
    assert in_repo(entrypoint[0]) == PLATFORM / "entrypoint.sh"
    assert in_repo(command[0]) == PLATFORM / "start-web.sh"


def test_dockerignore_keeps_secrets_and_local_state_out_of_the_image():
    patterns = {
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }

    assert {".git", ".venv", ".env", "db.sqlite3"} <= patterns
    assert "platform" not in patterns
    assert "pyproject.toml" not in patterns


def _collectstatic_env() -> dict[str, str]:
    """The NAME=value assignments the Dockerfile puts in front of `manage.py collectstatic`."""
    for keyword, args in dockerfile_instructions():
        if keyword == "RUN" and "collectstatic" in args:
            words = shlex.split(args.split("manage.py collectstatic")[0])
            return dict(word.split("=", 1) for word in words if re.match(r"^[A-Z_]+=", word))
    raise AssertionError("the Dockerfile runs no collectstatic")


def test_entrypoint_gives_up_after_a_bounded_number_of_attempts(tmp_path):
    marker = tmp_path / "ran"
    closed = free_port()  # nothing listens there
    env = minimal_env(
        DATABASE_URL=f"postgres://u:p@127.0.0.1:{closed}/db",
        REDIS_URL=f"redis://127.0.0.1:{closed}/0",
        WAIT_FOR_SERVICES_ATTEMPTS="2",
        WAIT_FOR_SERVICES_DELAY="0",
    )

    started = time.monotonic()
    result = subprocess.run(
        [str(PLATFORM / "entrypoint.sh"), "touch", str(marker)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert result.returncode != 0
    assert "giving up" in result.stderr
    assert "PostgreSQL" in result.stderr
    assert "Redis" in result.stderr
    assert not marker.exists(), "the command must not run while the services are down"
    assert time.monotonic() - started < 30


@pytest.mark.parametrize("variable", ["DATABASE_URL", "REDIS_URL"])
def test_entrypoint_requires_service_urls(tmp_path, variable):
    marker = tmp_path / "ran"
    env = minimal_env(DATABASE_URL="postgres://u:p@127.0.0.1:1/db", REDIS_URL="redis://127.0.0.1:1")
    del env[variable]

    result = subprocess.run(
        [str(PLATFORM / "entrypoint.sh"), "touch", str(marker)],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )

    assert result.returncode != 0
    assert variable in result.stderr
    assert not marker.exists()


# --- gunicorn ---------------------------------------------------------------------------------


def load_gunicorn_config(monkeypatch, cores: int, **env: str) -> dict:
    import runpy

    for name in ("PORT", "WEB_CONCURRENCY", "GUNICORN_THREADS", "GUNICORN_TIMEOUT"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(cores)), raising=False)
    return runpy.run_path(str(PLATFORM / "gunicorn.conf.py"))


def test_gunicorn_config_reads_port_and_concurrency_from_the_environment(monkeypatch):
    config = load_gunicorn_config(monkeypatch, cores=2, PORT="9123", WEB_CONCURRENCY="3")

    assert config["bind"] == "0.0.0.0:9123"
    assert config["workers"] == 3


def test_gunicorn_config_defaults_to_two_workers_per_core_plus_one_capped(monkeypatch):
    small = load_gunicorn_config(monkeypatch, cores=2)
    large = load_gunicorn_config(monkeypatch, cores=64)

    assert small["bind"] == "0.0.0.0:8000"
    assert small["workers"] == 2 * 2 + 1
    assert large["workers"] == large["MAX_DEFAULT_WORKERS"] < 2 * 64 + 1


def test_gunicorn_config_recycles_workers_and_logs_request_time(monkeypatch):
    config = load_gunicorn_config(monkeypatch, cores=2)

    assert config["preload_app"] is False
    assert config["max_requests"] > 0
    assert config["max_requests_jitter"] > 0
    assert config["threads"] >= 1
    assert config["timeout"] > 0
    assert any(code in config["access_log_format"] for code in ("%(M)s", "%(D)s", "%(L)s"))
    assert config["accesslog"] == "-"


def test_gunicorn_config_rejects_a_malformed_worker_count(monkeypatch):
    with pytest.raises(ValueError, match="WEB_CONCURRENCY"):
        load_gunicorn_config(monkeypatch, cores=2, WEB_CONCURRENCY="0")


# --- the web process end to end (gunicorn + production settings + WhiteNoise) ----------------


@pytest.fixture(scope="module")
def production_static(tmp_path_factory) -> Path:
    """Run the Dockerfile's collectstatic step into a temporary STATIC_ROOT.

    Returns a directory on PYTHONPATH holding `h5_build_settings`, the production settings with
    STATIC_ROOT pointed at the collected files.
    """
    base = tmp_path_factory.mktemp("image")
    static_root = base / "staticfiles"
    (base / "h5_build_settings.py").write_text(
        "from config.settings.production import *  # noqa: F403\n"
        f"STATIC_ROOT = {str(static_root)!r}\n"
    )
    env = minimal_env(
        **_collectstatic_env(),
        DJANGO_SETTINGS_MODULE="h5_build_settings",
        PYTHONPATH=f"{base}{os.pathsep}{ROOT}",
    )

    result = manage("collectstatic", "--noinput", env=env)

    assert result.returncode == 0, result.stderr
    assert (static_root / "staticfiles.json").is_file()
    return base


def test_dockerfile_collectstatic_step_succeeds_with_its_build_time_values(production_static):
    manifest = production_static / "staticfiles" / "staticfiles.json"

    paths = manifest.read_text()

    assert "css/assay.css" in paths


def _get(url: str, headers: dict[str, str]) -> tuple[int, dict[str, str], str]:
    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args, **kwargs):
            return None

    opener = urllib.request.build_opener(NoRedirect)
    request = urllib.request.Request(url, headers=headers)  # noqa: S310 - local test server
    try:
        with opener.open(request, timeout=10) as response:
            return response.status, dict(response.headers), response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read().decode()


def test_start_web_serves_pages_and_hashed_static_files(production_static, tmp_path):
    port = free_port()
    env = minimal_env(
        **PRODUCTION_ENV,
        DJANGO_SETTINGS_MODULE="h5_build_settings",
        PYTHONPATH=f"{production_static}{os.pathsep}{ROOT}",
        PORT=str(port),
        WEB_CONCURRENCY="1",
        GUNICORN_THREADS="2",
    )
    log = (tmp_path / "gunicorn.log").open("w")
    process = subprocess.Popen(
        [str(PLATFORM / "start-web.sh")], env=env, stdout=log, stderr=subprocess.STDOUT
    )
    base = f"http://127.0.0.1:{port}"
    https = {"Host": "example.org", "X-Forwarded-Proto": "https"}
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                status, _, page = _get(f"{base}/accounts/login/", https)
                break
            except OSError:
                assert process.poll() is None, (tmp_path / "gunicorn.log").read_text()
                assert time.monotonic() < deadline, "gunicorn did not answer within 60 s"
                time.sleep(0.3)

        css = re.search(r'href="(/static/css/assay\.[0-9a-f]{12}\.css)"', page)
        css_status, css_headers, _ = _get(f"{base}{css.group(1)}", https) if css else (0, {}, "")
        plain_status, plain_headers, _ = _get(f"{base}/accounts/login/", {"Host": "example.org"})
        bad_host_status, _, _ = _get(f"{base}/accounts/login/", {"Host": "evil.example.com"})
    finally:
        process.terminate()
        process.wait(timeout=30)
        log.close()
    access_log = (tmp_path / "gunicorn.log").read_text()

    assert status == 200, access_log
    assert css, "the page must link the hashed (manifest) stylesheet"
    assert css_status == 200
    assert "max-age=315360000" in css_headers.get("Cache-Control", "")
    assert plain_status == 301
    assert plain_headers["Location"].startswith("https://example.org/")
    assert bad_host_status == 400
    assert re.search(r'"GET /accounts/login/ HTTP/1\.1" 200 \d+ \d+ms', access_log), access_log


# --- settings ---------------------------------------------------------------------------------


def test_env_example_lists_every_variable_the_settings_read():
    read_by_settings = settings_env_names()

    listed = set(env_example_entries())

    assert read_by_settings, "no env(...) calls found: the parser is broken"
    assert read_by_settings - listed == set()


def test_env_example_lists_every_variable_compose_and_scripts_read(compose):
    in_compose = set(re.findall(r"\$\{([A-Z][A-Z0-9_]*)", COMPOSE.read_text()))
    for service in compose["services"].values():
        environment = service.get("environment") or {}
        in_compose |= {name for name, value in environment.items() if value is None}
    in_scripts: set[str] = set()
    for path in PLATFORM.iterdir():
        text = path.read_text()
        in_scripts |= set(re.findall(r"\$\{([A-Z][A-Z0-9_]*)", text))
        in_scripts |= set(
            re.findall(r"""(?:environ\.get|_int)\(\s*["']([A-Z][A-Z0-9_]*)["']""", text)
        )

    listed = set(env_example_entries())

    assert in_compose - listed == set()
    assert in_scripts - listed == set()


def test_env_example_documents_each_variable_and_holds_no_secrets():
    lines = ENV_EXAMPLE.read_text().splitlines()
    entries = env_example_entries()

    for index, line in enumerate(lines):
        if re.match(r"^[A-Z][A-Z0-9_]*=", line):
            block_start = index
            while block_start > 0 and re.match(r"^[A-Z][A-Z0-9_]*=", lines[block_start - 1]):
                block_start -= 1
            assert block_start > 0, line
            assert lines[block_start - 1].startswith("#"), line
    assert entries["DJANGO_SECRET_KEY"] == ""
    assert entries["POSTGRES_PASSWORD"] == ""


def test_check_deploy_passes_for_production_settings():
    result = manage(
        "check",
        "--deploy",
        "--settings=config.settings.production",
        "--fail-level",
        "WARNING",
        env=minimal_env(**PRODUCTION_ENV),
    )

    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("DJANGO_SECRET_KEY", None),
        ("DATABASE_URL", None),
        ("DATABASE_URL", "sqlite:////tmp/assay.sqlite3"),
        ("REDIS_URL", None),
        ("DJANGO_ALLOWED_HOSTS", None),
    ],
)
def test_production_settings_refuse_to_start_without_required_variables(variable, value):
    env = minimal_env(**PRODUCTION_ENV)
    if value is None:
        del env[variable]
    else:
        env[variable] = value

    result = manage("check", "--settings=config.settings.production", env=env)

    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr
    assert variable in result.stderr.strip().splitlines()[-1]


def test_models_and_migrations_agree(tmp_path):
    env = minimal_env(DATABASE_URL=f"sqlite:///{tmp_path / 'check.sqlite3'}")

    result = manage("makemigrations", "--check", "--dry-run", env=env)

    assert result.returncode == 0, result.stdout + result.stderr
