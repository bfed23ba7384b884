"""The settings page's firmware update (README "Updates over HTTP"): the
running version shown from sys_info.update, a bundle for another board
refused with the API's message, a good one uploaded (the controller then
restarts: boards/HOST reset() ends the process with 75) and, after the
restart, the new version shown as tentative."""



import bundle
from simrun import Sim
from test_webui_browser import browser, close, console, css, fw_log_clean, js_errors, visible, wait

AUTH = "YWRtaW46MTIzNGFiY2Q="  # admin:1234abcd, as the page keeps it in sessionStorage


def settings(d, base):
    d.get(base)
    d.execute_script("sessionStorage.setItem('pbctl-auth', arguments[0])", AUTH)
    d.get("about:blank")  # (the page reads its credentials when it loads)
    d.get(base + "#settings")
    wait(d, lambda: css(d, "#fw-version")[0].text.startswith("Running version"), what="version")


def test_update_from_the_settings_page(tmp_path):
    d = browser()
    d.console = []
    flash = str(tmp_path / "flash")
    s = Sim(flash=flash)
    try:
        s.start()
        base = "http://127.0.0.1:%d/" % s.http_port
        settings(d, base)
        assert css(d, "#fw-version")[0].text == "Running version 0.2.0"
        data = bundle.build("HOST", ver="9.9.9-ui")
        other = tmp_path / "other.bundle"
        other.write_bytes(data.replace(b" HOST ", b" ESP32_GENERIC ", 1))
        good = tmp_path / "good.bundle"
        good.write_bytes(data)
        f = css(d, "#update")[0]
        css(d, "input[name=bundle]", f)[0].send_keys(str(other))
        css(d, "button[type=submit]", f)[0].click()
        try:
            wait(d, lambda: css(d, ".msg.bad", f) and css(d, ".msg.bad", f)[0].text == "bundle for another board",
                 what="the API's error")
        except Exception:
            raise AssertionError(([e.text for e in css(d, ".msg", f)], console(d), s.fw_lines[-10:]))
        css(d, "input[name=bundle]", f)[0].send_keys(str(good))
        css(d, "button[type=submit]", f)[0].click()
        wait(d, lambda: css(d, ".msg.ok", f) and "installed" in css(d, ".msg.ok", f)[0].text, 30, "installed")
        assert css(d, ".msg.ok", f)[0].text == "version 9.9.9-ui installed; the controller restarts"
        assert s.fw.wait(10) == 75
        assert js_errors(d) == []
    finally:
        s.stop()
    fw_log_clean(s)
    s = Sim(flash=flash)
    try:
        s.start()
        base = "http://127.0.0.1:%d/" % s.http_port
        settings(d, base)
        assert css(d, "#fw-version")[0].text == (
            "Running version 9.9.9-ui (new: start 1 of 3, kept once it runs 30 s) · the way back: factory")
        assert visible(d, "#update")
        assert js_errors(d) == []
    finally:
        close(d)
        s.stop()
    fw_log_clean(s)
