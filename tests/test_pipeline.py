"""The pipeline graph: parameters, inputs, outputs, step names, ordering and overrides."""

from __future__ import annotations

import pytest

from jupyter_parallelrun import (
    Dataset,
    DatasetConsumptionConfig,
    ParallelRunConfig,
    ParallelRunStep,
    Pipeline,
    PipelineData,
    PipelineParameter,
)
from jupyter_parallelrun.pipeline import resolve_parameters


@pytest.fixture
def dataset(files):
    return Dataset.File.from_files(path=str(files(3)))


@pytest.fixture
def config():
    return ParallelRunConfig(entry_script="score.py")


def step(name, config, inputs, **kwargs):
    return ParallelRunStep(name=name, parallel_run_config=config, inputs=inputs, **kwargs)


@pytest.mark.parametrize("name", ["Score", "ab", "-score", "score-", "s" * 33, "score_step"])
def test_step_name_rule(name, config, dataset):
    with pytest.raises(ValueError, match=r"3 to 32 .*\^\[a-z\].*got"):
        step(name, config, [dataset])


def test_step_inputs(config, dataset, ws):
    parameter = PipelineParameter("data_param", dataset)
    for inputs in (
        [dataset],
        [dataset.as_named_input("items")],
        [parameter],
        [DatasetConsumptionConfig("items", parameter).as_mount()],
        [PipelineData("upstream")],
    ):
        assert step("abc", config, inputs).inputs == inputs
    with pytest.raises(ValueError, match="inputs must hold exactly one data input.*got 2"):
        step("abc", config, [dataset, dataset])
    with pytest.raises(ValueError, match="inputs must hold exactly one data input.*got 0"):
        step("abc", config, [])
    with pytest.raises(TypeError, match="inputs must be a list; got FileDataset"):
        step("abc", config, dataset)
    with pytest.raises(TypeError, match="inputs\\[0\\] must be a Dataset.*got 'images'"):
        step("abc", config, ["images"])
    with pytest.raises(TypeError, match="inputs\\[0\\] must be a Dataset.*PipelineParameter"):
        step("abc", config, [PipelineParameter("p", "x")])
    with pytest.raises(
        TypeError, match="parallel_run_config must be a ParallelRunConfig; got dict"
    ):
        step("abc", {}, [dataset])


def test_step_other_arguments(config, dataset):
    size = PipelineParameter("size", 3)
    made = step(
        "abc",
        config,
        [dataset],
        output=PipelineData("out"),
        side_inputs=[dataset.as_named_input("labels")],
        arguments=["--size", size, 2.5, dataset],
        allow_reuse=False,
    )
    assert made.arguments == ["--size", size, 2.5, dataset] and made.allow_reuse is False
    with pytest.raises(TypeError, match="output must be a PipelineData or None; got str"):
        step("abc", config, [dataset], output="out")
    with pytest.raises(TypeError, match="side_inputs\\[0\\] must be a Dataset"):
        step("abc", config, [dataset], side_inputs=[3])
    with pytest.raises(TypeError, match="arguments\\[1\\] must be a Dataset.*got \\[1\\]"):
        step("abc", config, [dataset], arguments=["a", [1]])
    with pytest.raises(TypeError, match="allow_reuse must be True or False; got 'yes'"):
        step("abc", config, [dataset], allow_reuse="yes")


def test_pipeline_orders_steps_by_their_data(ws, config, dataset):
    first_out, second_out = PipelineData("first_out"), PipelineData("second_out")
    third = step("third", config, [second_out])
    second = step("second", config, [first_out], output=second_out)
    first = step("first", config, [dataset], output=first_out)
    pipeline = Pipeline(workspace=ws, steps=[third, second, first])
    assert [s.name for s in pipeline.steps] == ["first", "second", "third"]
    assert pipeline.validate() == []


def test_side_inputs_and_arguments_count_as_dependencies(ws, config, dataset):
    labels = PipelineData("labels")
    user = step("user", config, [dataset], arguments=["--labels", labels])
    maker = step("maker", config, [dataset], output=labels)
    assert [s.name for s in Pipeline(ws, [user, maker]).steps] == ["maker", "user"]


def test_pipeline_rejects(ws, config, dataset):
    with pytest.raises(ValueError, match="two steps are named 'same'"):
        Pipeline(ws, [step("same", config, [dataset]), step("same", config, [dataset])])
    with pytest.raises(ValueError, match="'abc' reads PipelineData 'nowhere', which no step"):
        Pipeline(ws, [step("abc", config, [PipelineData("nowhere")])])
    a_out, b_out = PipelineData("a_out"), PipelineData("b_out")
    with pytest.raises(ValueError, match="'aaa', 'bbb' depend on each other's PipelineData"):
        Pipeline(
            ws,
            [
                step("aaa", config, [b_out], output=a_out),
                step("bbb", config, [a_out], output=b_out),
            ],
        )
    with pytest.raises(ValueError, match="'aaa' and 'bbb' both write the PipelineData 'a_out'"):
        Pipeline(
            ws,
            [
                step("aaa", config, [dataset], output=a_out),
                step("bbb", config, [dataset], output=a_out),
            ],
        )
    with pytest.raises(ValueError, match="steps must hold at least one ParallelRunStep"):
        Pipeline(ws, [])
    with pytest.raises(TypeError, match="steps\\[0\\] must be a ParallelRunStep; got str"):
        Pipeline(ws, ["abc"])
    with pytest.raises(TypeError, match="workspace must be a Workspace; got str"):
        Pipeline("ws", [step("abc", config, [dataset])])


def test_parameters_from_everywhere(ws, dataset):
    size = PipelineParameter("batch_size_param", "5")
    data = PipelineParameter("mnist_param", dataset)
    side = PipelineParameter("labels_param", dataset)
    argument = PipelineParameter("threshold", 0.5)
    config = ParallelRunConfig(entry_script="score.py", mini_batch_size=size)
    made = step(
        "abc",
        config,
        [DatasetConsumptionConfig("images", data)],
        side_inputs=[DatasetConsumptionConfig("labels", side)],
        arguments=["--threshold", argument],
    )
    other = step("xyz", config, [data], arguments=[PipelineParameter("threshold", 0.5)])
    parameters = Pipeline(ws, [made, other]).parameters()
    assert sorted(parameters) == ["batch_size_param", "labels_param", "mnist_param", "threshold"]
    assert parameters["mnist_param"] is data


def test_parameters_with_one_name_and_two_defaults(ws, config, dataset):
    one = step("one", config, [dataset], arguments=[PipelineParameter("p", 1)])
    two = step("two", config, [dataset], arguments=[PipelineParameter("p", 2)])
    with pytest.raises(ValueError, match="two PipelineParameters are named 'p' .*\\(1 and 2\\)"):
        Pipeline(ws, [one, two])


def test_resolve_parameters(ws, dataset, files):
    data = PipelineParameter("mnist_param", dataset)
    size = PipelineParameter("batch_size_param", "5")
    config = ParallelRunConfig(entry_script="score.py", mini_batch_size=size)
    pipeline = Pipeline(ws, [step("abc", config, [DatasetConsumptionConfig("images", data)])])
    assert resolve_parameters(pipeline, None) == {"mnist_param": dataset, "batch_size_param": "5"}
    single = Dataset.File.from_files(path=str(files(1, "single")))
    values = resolve_parameters(pipeline, {"mnist_param": single, "batch_size_param": "1"})
    assert values == {"mnist_param": single, "batch_size_param": "1"}
    with pytest.raises(
        ValueError,
        match="pipeline_parameters: unknown parameter 'foo'; the pipeline's parameters are: "
        "batch_size_param, mnist_param",
    ):
        resolve_parameters(pipeline, {"foo": 1})
    with pytest.raises(TypeError, match="'mnist_param' must be of the kind of its default.*got 'i"):
        resolve_parameters(pipeline, {"mnist_param": "images/"})
    with pytest.raises(TypeError, match="'batch_size_param' must be .*\\('5'\\); got FileData"):
        resolve_parameters(pipeline, {"batch_size_param": single})
    with pytest.raises(TypeError, match="pipeline_parameters must be a dict"):
        resolve_parameters(pipeline, [("batch_size_param", 1)])
