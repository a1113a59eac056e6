"""SOP files: the step format (`format`), its texts (`templates`) and validation (`check`)."""
