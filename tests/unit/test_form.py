"""The spawn form shows the profiles a user may use; form data is shaped, not judged."""

import pytest

from gpuhub.form import options_from_form, render_form
from gpuhub.settings import parse_settings
from tests.conftest import BASE_SETTINGS


def test_form_lists_usable_profiles_and_marks_gpu_ones():
    html = render_form(parse_settings(BASE_SETTINGS), ["ml-lab"])
    assert 'value="cpu-small"' in html and 'value="cpu-data"' in html
    assert 'value="cpu-data" checked' in html  # the default
    assert "2.5 CPU · 8 GB RAM · 2 GB shm · no GPU" in html
    gpu = html[html.index('value="gpu-1"'):]
    assert gpu.split(">")[0].endswith("disabled")
    assert "GPU profiles arrive with the GPU allocator" in gpu


def test_form_hides_profiles_of_other_groups():
    html = render_form(parse_settings(BASE_SETTINGS), [])
    assert 'value="cpu-data"' not in html
    assert 'value="cpu-small" checked' in html


def test_form_escapes_markup_from_settings():
    text = BASE_SETTINGS.replace('name = "cpu-small"', 'name = "cpu-small"\ndescription = "<script>alert(1)</script>"')
    html = render_form(parse_settings(text), [])
    assert "<script>alert" not in html and "&lt;script&gt;" in html


@pytest.mark.parametrize(
    "formdata, options",
    [
        ({"profile": ["cpu-small"]}, {"profile": "cpu-small"}),
        ({"profile": ["x", "y"]}, {"profile": "x"}),
        ({"profile": []}, {}),
        ({}, {}),
        ({"image": ["evil:1"], "profile": ["cpu-small"]}, {"profile": "cpu-small"}),
    ],
)
def test_options_from_form(formdata, options):
    assert options_from_form(formdata) == options
