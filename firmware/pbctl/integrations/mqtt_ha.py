# pbctl.integrations.mqtt_ha: Home Assistant's MQTT discovery configs of one
# device (INTEGRATIONS.md §3), imported by integrations/mqtt.py for a round of
# configs and dropped again (nothing of it stays resident).
#
# One Home Assistant device per EVSE and meter: identifiers
# ["pbctl_<serialno>_<dev_id>"], its entities under
# homeassistant/<component>/pbctl_<serialno>_<dev_id>/<key>/config with
# unique_id "pbctl_<serialno>_<dev_id>_<key>", the device's state topic and a
# value_template, and <prefix>/status as availability (online/offline).
# EVSE: power (W), energy (Wh, total_increasing), current_l1..l3 (A), state
# (text), limit (A: the limit offered), a number "current" (the MQTT cap in
# A; HA sends mA to set/current, 0 = none) and a switch "enable"
# (set/enable 1/0). Meter: power, import and export (Wh, total_increasing),
# current_l1..l3.
import json

# key component field unit device_class state_class  (one entity a line; "-": none)
_EVSE = """power sensor cur_charging_power W power measurement
energy sensor total_energy Wh energy total_increasing
current_l1 sensor current_l1 A current measurement
current_l2 sensor current_l2 A current measurement
current_l3 sensor current_l3 A current measurement
limit sensor charging_cur A current measurement
state sensor state - - -
current number mqtt_current A current -
enable switch mqtt_enable - - -"""
_METER = """power sensor power_w W power measurement
import sensor import Wh energy total_increasing
export sensor export Wh energy total_increasing
current_l1 sensor current_l1 A current measurement
current_l2 sensor current_l2 A current measurement
current_l3 sensor current_l3 A current measurement"""
_STATES = "{{ ['unknown','waiting for EV','EV present','charging','charging with ventilation','error','offline']" \
          "[value_json.state] | default('unknown') }}"


def configs(link, dev_id, is_evse, d):
    """(topic, payload) of every discovery config of the device; d None: the
    topics only (the payloads "", to remove them)."""
    serial = link.app.serial
    node = "pbctl_%s_%s" % (serial, dev_id)
    pre = link.pre
    state = "%s/%s/state" % (pre, dev_id)
    dev = None
    if d is not None:
        dev = {"identifiers": [node], "name": d.cfg["name"] or dev_id, "manufacturer": "pbctl",
               "model": d.model.split(",")[0] or d.dev_type, "serial_number": dev_id}
    for line in (_EVSE if is_evse else _METER).split("\n"):
        key, comp, field, unit, dc, sc = line.split(" ")
        topic = "homeassistant/%s/%s/%s/config" % (comp, node, key)
        if d is None:
            yield topic, ""
            continue
        c = {"name": key.replace("_", " "), "unique_id": node + "_" + key,
             "state_topic": state, "availability_topic": pre + "/status", "device": dev}
        v = "value_json." + field
        if unit == "A":
            v += " / 1000"  # the state's currents are in mA
        c["value_template"] = "{{ %s }}" % v
        if key == "state":
            c["value_template"] = _STATES
        if unit != "-":
            c["unit_of_measurement"] = unit
        if dc != "-":
            c["device_class"] = dc
        if sc != "-":
            c["state_class"] = sc
        if comp == "number":
            c["command_topic"] = "%s/%s/set/current" % (pre, dev_id)
            c["command_template"] = "{{ (value * 1000) | int }}"
            c["min"] = 0
            c["max"] = d.cfg["max_charging_cur"] // 1000
            c["step"] = 1
            c["mode"] = "box"
        elif comp == "switch":
            c["command_topic"] = "%s/%s/set/enable" % (pre, dev_id)
            c["payload_on"] = c["state_on"] = "1"
            c["payload_off"] = c["state_off"] = "0"
        yield topic, json.dumps(c)
