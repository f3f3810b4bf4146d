"""The spawn form shows the profiles a user may use; form data is shaped, not judged."""

import pytest

from gpuhub.policy import form
from gpuhub.policy.errors import SpawnRefused
from gpuhub.policy.form import Availability, gpu_source_text, options_from_form, render_form
from gpuhub.config.schema import parse_settings
from tests.conftest import BASE_SETTINGS


def _radio(html: str, name: str) -> str:
    return html[html.index(f'value="{name}"'):].split(">")[0]


def _card(html: str, name: str) -> str:
    return html[html.index(f'value="{name}"'):].split("</label>")[0]


def test_form_lists_usable_profiles_with_gpu_capacity():
    html = render_form(
        parse_settings(BASE_SETTINGS),
        ["ml-lab"],
        availability={"gpu-1": Availability("2 of 8 NVIDIA H100 80GB HBM3 free")},
        gpu_source="NVML",
    )
    assert 'value="cpu-small"' in html and 'value="cpu-data"' in html
    assert 'value="cpu-data" checked' in html  # the default
    assert "2.5 CPU · 8 GB RAM · 2 GB shm · no GPU" in html
    assert not _radio(html, "gpu-1").endswith("disabled")
    assert "2 of 8 NVIDIA H100 80GB HBM3 free" in _card(html, "gpu-1")
    assert "GPU figures: NVML" in html


@pytest.mark.parametrize(
    "availability, disabled, fragment",
    [
        (Availability("0 of 4 NVIDIA H100 80GB HBM3 free", True, 3), False, "3 waiting: you would join the line"),
        (Availability("no whole GPU on this host", False), True, "no whole GPU on this host: cannot start on this host"),
        (Availability("shared: 3 slices free"), False, "shared: 3 slices free"),
    ],
)
def test_form_says_when_a_gpu_profile_waits_or_cannot_start(availability, disabled, fragment):
    html = render_form(parse_settings(BASE_SETTINGS), [], availability={"gpu-1": availability})
    assert _radio(html, "gpu-1").endswith("disabled") is disabled
    assert fragment in _card(html, "gpu-1")


def test_form_shows_only_profiles_the_quota_allows():
    html = render_form(parse_settings(BASE_SETTINGS), ["ml-lab"], allowed_profiles=("cpu-small",))
    assert 'value="cpu-small" checked' in html
    assert 'value="cpu-data"' not in html and 'value="gpu-1"' not in html


def test_simulated_and_env_only_sources_are_labelled():
    text = gpu_source_text("simulated (file:/srv/inv.toml)", True, "env-only")
    assert text.startswith("SIMULATED inventory (file:/srv/inv.toml)")
    assert "env-only exposure" in text
    assert gpu_source_text("NVML", False, "device_requests") == "NVML"


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
        # passed on, so the one check refuses it as the REST API does (it used to be dropped silently)
        ({"image": ["evil:1"], "profile": ["cpu-small"]}, {"image": "evil:1", "profile": "cpu-small"}),
        ({"colour": ["red"], "_xsrf": ["t0k"]}, {"colour": "red"}),
    ],
)
def test_options_from_form(formdata, options):
    assert options_from_form(formdata) == options


PAGE = {"Sec-Fetch-Mode": "navigate", "Sec-Fetch-Dest": "document"}


@pytest.mark.parametrize(
    "headers, allowed",
    [
        ({}, True),  # no fetch metadata: a script, curl, or a browser on plain HTTP
        ({**PAGE, "Sec-Fetch-Site": "none", "Sec-Fetch-User": "?1"}, True),  # typed or bookmarked
        ({**PAGE, "Sec-Fetch-Site": "none"}, True),  # the address bar
        ({**PAGE, "Sec-Fetch-Site": "same-origin", "Sec-Fetch-User": "?1"}, True),  # a clicked link, a redirect after login
        ({**PAGE, "Sec-Fetch-Site": "cross-site", "Sec-Fetch-User": "?1"}, True),  # a link clicked in the course's LMS
        ({**PAGE, "Sec-Fetch-Site": "same-origin"}, False),  # a page's script: location.href = link
        ({**PAGE, "Sec-Fetch-Site": "cross-site"}, False),
        ({"Sec-Fetch-Mode": "no-cors", "Sec-Fetch-Dest": "image", "Sec-Fetch-Site": "same-origin"}, False),  # <img src=...>
        ({"Sec-Fetch-Mode": "no-cors", "Sec-Fetch-Dest": "script", "Sec-Fetch-Site": "cross-site"}, False),
        ({"Sec-Fetch-Mode": "cors", "Sec-Fetch-Dest": "empty", "Sec-Fetch-Site": "same-origin"}, False),  # fetch()
        ({"Sec-Fetch-Mode": "navigate", "Sec-Fetch-Dest": "iframe", "Sec-Fetch-Site": "same-origin", "Sec-Fetch-User": "?1"}, False),  # a frame
        ({"Sec-Fetch-Mode": "no-cors"}, False),
        ({"Sec-Fetch-Dest": "image"}, False),
        ({"Sec-Fetch-User": "?1"}, False),  # metadata, but not a page navigation
    ],
)
def test_a_start_link_starts_a_server_only_when_the_person_opens_it(headers, allowed):
    if allowed:
        form.check_start_link(headers)
    else:
        with pytest.raises(SpawnRefused) as refused:
            form.check_start_link(headers)
        assert refused.value.status_code == 403 and "must be opened by you" in refused.value.message
