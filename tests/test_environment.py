"""Environment, and the check of an environment against the workers' Python."""

from __future__ import annotations

import importlib.metadata
import stat
import sys

import pytest

from jupyter_parallelrun import DEFAULT_CPU_IMAGE, CondaDependencies, Environment
from jupyter_parallelrun.environment import EnvironmentCheckError, check_environment

PANDAS = importlib.metadata.version("pandas")


def environment(*pip_packages, **python):
    env = Environment(name="batch_environment")
    env.python.conda_dependencies = CondaDependencies.create(pip_packages=list(pip_packages))
    for key, value in python.items():
        setattr(env.python, key, value)
    return env


def test_from_pip_requirements(tmp_path):
    path = tmp_path / "requirements.txt"
    path.write_text("# scoring\n--index-url https://example.org\npandas>=2  # tables\n\npillow\n")
    env = Environment.from_pip_requirements("scoring", path)
    assert env.python.conda_dependencies.pip_packages == ["pandas>=2", "pillow"]
    with pytest.raises(FileNotFoundError, match="file_path=.*no such file"):
        Environment.from_pip_requirements("scoring", tmp_path / "none.txt")


def test_defaults_and_name():
    env = Environment(name="batch_environment")
    assert env.version is None and env.environment_variables == {}
    assert env.python.interpreter_path is None and env.python.conda_dependencies is None
    assert env.docker.base_image == DEFAULT_CPU_IMAGE and env.docker.enabled is False
    with pytest.raises(ValueError, match="name must be a non-empty string; got ''"):
        Environment(name="")


def test_register_and_get(ws):
    env = environment("pandas")
    env.environment_variables["OMP_NUM_THREADS"] = "1"
    assert env.register(ws).version == "1"
    assert env.register(ws).version == "1"
    env.python.conda_dependencies.add_pip_package("pillow")
    assert env.register(ws).version == "2"
    latest = Environment.get(ws, "batch_environment")
    assert latest.version == "2"
    assert latest.python.conda_dependencies.pip_packages == ["pandas", "pillow"]
    assert latest.environment_variables == {"OMP_NUM_THREADS": "1"}
    first = Environment.get(ws, "batch_environment", version="1")
    assert first.python.conda_dependencies.pip_packages == ["pandas"]
    assert sorted(ws.environments) == ["batch_environment"]
    with pytest.raises(ValueError, match="no environment 'other'.*registered: batch_environment"):
        Environment.get(ws, "other")
    with pytest.raises(ValueError, match="no environment 'batch_environment' version 3"):
        Environment.get(ws, "batch_environment", 3)


def test_spec_round_trip():
    env = environment("pandas", interpreter_path="/opt/python")
    env.docker.enabled = True
    again = Environment.from_spec(env.to_spec())
    assert again.to_spec() == env.to_spec()


def test_check_passes_for_installed_packages():
    spec = environment("pandas", f"pandas=={PANDAS}", "tensorflow_cpu", "Pandas>=1").to_spec()
    assert check_environment(spec) == []
    assert check_environment(None) == []
    assert check_environment(Environment("bare").to_spec()) == []


def test_check_names_missing_packages_with_the_pip_install_line():
    spec = environment("nosuchpkg", "pandas>=99", "pillow", "other-missing[extra]>=1").to_spec()
    with pytest.raises(EnvironmentCheckError) as raised:
        check_environment(spec)
    message = str(raised.value)
    assert message.startswith(
        "environment 'batch_environment': pip packages 'nosuchpkg', 'other-missing[extra]>=1' "
        f"are not installed in {sys.executable}"
    )
    assert f"Install with: {sys.executable} -m pip install nosuchpkg 'other-missing[extra]>=1'" in (
        message
    )
    assert "pillow" not in message and "pandas" not in message


def test_check_skips_what_it_cannot_or_need_not_check():
    spec = environment(
        "azureml-core",
        "azureml_defaults>=1",
        "nosuchpkg; python_version < '3'",
        "git+https://github.com/example/repo.git",
        "thing @ https://example.org/thing.whl",
    ).to_spec()
    warnings = check_environment(spec)
    assert len(warnings) == 2
    assert "'git+https://github.com/example/repo.git' not checked" in warnings[0]
    assert "'thing @ https://example.org/thing.whl' not checked: it is a URL" in warnings[1]


def test_check_warns_about_docker_and_conda():
    env = environment("pandas")
    env.docker.enabled = True
    env.docker.base_image = "my/image:1"
    env.python.conda_dependencies.add_conda_package("python=2.7")
    env.python.conda_dependencies.add_conda_package("scipy")
    warnings = check_environment(env.to_spec())
    assert warnings[0].startswith(
        "environment 'batch_environment': settings recorded, not applied (the workers run as "
        "local processes of this machine, with no container or cluster image): "
        "docker (enabled=True, base_image='my/image:1')"
    )
    assert "asks for python=2.7; the workers run Python 3." in warnings[1]
    assert "conda packages recorded, not checked: scipy" in warnings[2]
    env.python.conda_dependencies = CondaDependencies.create(
        python_version=".".join(map(str, sys.version_info[:2]))
    )
    env.docker = Environment("x").docker
    assert check_environment(env.to_spec()) == []


def test_interpreter_path(tmp_path):
    assert check_environment(environment("pandas", interpreter_path=sys.executable).to_spec()) == []
    missing = str(tmp_path / "no-python")
    with pytest.raises(EnvironmentCheckError, match=f"interpreter_path='{missing}' does not exist"):
        check_environment(environment("pandas", interpreter_path=missing).to_spec())


def test_interpreter_path_runs_the_check_in_that_python(tmp_path):
    wrapper = tmp_path / "python"
    wrapper.write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IEXEC)
    assert check_environment(environment("pandas", interpreter_path=str(wrapper)).to_spec()) == []
    with pytest.raises(EnvironmentCheckError, match=f"'nosuchpkg' is not installed in {wrapper}"):
        check_environment(environment("nosuchpkg", interpreter_path=str(wrapper)).to_spec())
    broken = tmp_path / "broken"
    broken.write_text("#!/bin/sh\necho broken >&2\nexit 3\n")
    broken.chmod(wrapper.stat().st_mode | stat.S_IEXEC)
    with pytest.raises(EnvironmentCheckError, match="failed to report its packages: broken"):
        check_environment(environment("pandas", interpreter_path=str(broken)).to_spec())


def test_azure_constructors_list_and_clone(ws, tmp_path):
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("pandas\n")
    env = Environment.from_pip_requirements("scoring", requirements, pip_version="23.3")
    assert env.python.conda_dependencies.conda_packages == ["pip=23.3"]

    class Registry:  # Azure's ContainerRegistry: address, username, password
        address, username, password = "myregistry.azurecr.io", "me", "secret"

    image = Environment.from_docker_image(
        "img", "my/image:2", Registry(), pip_requirements=requirements
    )
    assert image.docker.base_image == "my/image:2"
    assert image.docker.base_image_registry.address == "myregistry.azurecr.io"
    assert "secret" not in str(image.to_spec())
    plain = Environment("plain")
    plain.docker.base_image_registry.address = "other.azurecr.io"
    plain.docker.base_image_registry.password = "secret"
    assert "secret" not in str(plain.to_spec())
    again = Environment.from_spec(plain.to_spec())
    assert again.docker.base_image_registry.address == "other.azurecr.io"
    assert (
        "base_image_registry={'address': 'other.azurecr.io', 'username': None"
        in (check_environment(plain.to_spec())[0])
    )
    assert image.python.conda_dependencies.pip_packages == ["pandas"]
    dockerfile = tmp_path / "Dockerfile"
    dockerfile.write_text("FROM ubuntu:22.04\nRUN echo hi\n")
    built = Environment.from_dockerfile("file", str(dockerfile))
    assert built.docker.base_dockerfile == "FROM ubuntu:22.04\nRUN echo hi\n"
    assert built.docker.base_image is None and built.python.user_managed_dependencies
    assert Environment.from_dockerfile("text", "FROM ubuntu:22.04\n").docker.base_dockerfile == (
        "FROM ubuntu:22.04\n"
    )
    notes = check_environment(image.to_spec())
    assert "docker (base_image='my/image:2', base_image_registry=" in notes[0]
    assert "base_dockerfile='FROM ubuntu:22.04" in check_environment(built.to_spec())[0]
    with pytest.raises(ValueError, match="conda_specification or pip_requirements, not both"):
        Environment.from_docker_image("x", "i", None, str(requirements), str(requirements))

    image.register(ws)
    copy = image.clone("img-copy")
    assert copy.name == "img-copy" and copy.version is None
    assert {**copy.to_spec(), "name": "img"} == {**image.to_spec(), "version": None}
    copy.register(ws)
    assert sorted(Environment.list(ws)) == ["img", "img-copy"]
    assert Environment.list(ws)["img"].docker.base_image == "my/image:2"


def test_resume_checks_the_environment_again_before_a_runner_starts(
    ws, write_script, files, tmp_path
):
    from conftest import ECHO_SCRIPT, file_dataset, output_rows, submit_step

    # A Python whose only extra is the metadata of a distribution, taken away before resume.
    site = tmp_path / "site"
    metadata = site / "jpr_resume_check-1.0.dist-info" / "METADATA"
    metadata.parent.mkdir(parents=True)
    metadata.write_text("Metadata-Version: 2.1\nName: jpr-resume-check\nVersion: 1.0\n")
    wrapper = tmp_path / "python"
    wrapper.write_text(f'#!/bin/sh\nPYTHONPATH="{site}:$PYTHONPATH" exec "{sys.executable}" "$@"\n')
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IEXEC)
    broken = tmp_path / "init_fails"
    broken.touch()
    script = write_script(
        f"import os\n\ndef init():\n    assert not os.path.exists({str(broken)!r})\n"
        + ECHO_SCRIPT.replace("def init():\n    pass\n", "")
    )
    env = environment("jpr-resume-check", interpreter_path=str(wrapper))
    run = submit_step(ws, script, file_dataset(files(3)), environment=env)
    assert run.wait_for_completion(timeout_seconds=120, raise_on_error=False) == "Failed"
    broken.unlink()
    metadata.unlink()
    with pytest.raises(
        EnvironmentCheckError, match=f"'jpr-resume-check' is not installed in {wrapper}"
    ):
        run.resume()
    assert run.get_status() == "Failed"
    metadata.write_text("Metadata-Version: 2.1\nName: jpr-resume-check\nVersion: 1.0\n")
    run.resume()
    assert run.wait_for_completion(timeout_seconds=120) == "Completed"
    assert len(output_rows(run)) == 3
