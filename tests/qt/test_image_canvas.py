"""ImageCanvas: grid layout, selection, zoom/pan, rendering, menu and PIL conversion."""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import gc

import pytest
from PIL import Image
from PySide6.QtCore import QEvent, QPoint, QPointF, Qt
from PySide6.QtGui import QColor, QGuiApplication, QImage, QPalette, QWheelEvent
from PySide6.QtWidgets import QApplication

from gdl_studio.qt.canvases.image_canvas import ImageCanvas, pil_to_qimage

RED, GREEN, BLUE, YELLOW = (255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0)


def solid(colour: tuple[int, int, int], size: int = 8) -> Image.Image:
    return Image.new("RGB", (size, size), colour)


def checkerboard(size: int = 4) -> Image.Image:
    image = Image.new("L", (size, size))
    image.putdata([255 * ((x + y) % 2) for y in range(size) for x in range(size)])
    return image


@pytest.fixture
def canvas(qtbot) -> ImageCanvas:
    widget = ImageCanvas()
    qtbot.addWidget(widget)
    widget.resize(300, 300)
    widget.show()
    qtbot.waitExposed(widget)
    return widget


def pixel(widget: ImageCanvas, point: QPointF) -> tuple[int, int, int]:
    colour = widget.grab().toImage().pixelColor(point.toPoint())
    return colour.red(), colour.green(), colour.blue()


def colours_in(image: QImage) -> set[tuple[int, int, int]]:
    return {
        image.pixelColor(x, y).getRgb()[:3]
        for y in range(0, image.height(), 2)
        for x in range(0, image.width(), 2)
    }


def wheel(widget: ImageCanvas, pos: QPointF, notches: int) -> None:
    event = QWheelEvent(
        pos,
        QPointF(widget.mapToGlobal(pos.toPoint())),
        QPoint(),
        QPoint(0, 120 * notches),
        Qt.MouseButton.NoButton,
        Qt.KeyboardModifier.NoModifier,
        Qt.ScrollPhase.NoScrollPhase,
        False,
    )
    QApplication.sendEvent(widget, event)


# -- PIL conversion ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("mode", "value", "expected"),
    [
        ("L", 77, (77, 77, 77, 255)),
        ("RGB", (10, 20, 30), (10, 20, 30, 255)),
        ("RGBA", (10, 20, 30, 128), (10, 20, 30, 128)),
        ("LA", (90, 255), (90, 90, 90, 255)),
        ("1", 1, (255, 255, 255, 255)),
    ],
)
def test_pil_to_qimage_modes(qtbot, mode, value, expected) -> None:
    image = Image.new(mode, (5, 3), value)
    qimage = pil_to_qimage(image)
    del image
    gc.collect()  # the QImage must own its pixels, not borrow the freed PIL buffer
    assert (qimage.width(), qimage.height()) == (5, 3)
    assert qimage.pixelColor(4, 2).getRgb() == expected


def test_pil_to_qimage_keeps_row_layout(qtbot) -> None:
    # An odd width catches a wrong bytes-per-line (rows would shear).
    image = Image.new("RGB", (3, 2), (0, 0, 0))
    image.putpixel((2, 1), (200, 100, 50))
    assert pil_to_qimage(image).pixelColor(2, 1).getRgb()[:3] == (200, 100, 50)
    assert pil_to_qimage(image).pixelColor(0, 1).getRgb()[:3] == (0, 0, 0)


# -- display ----------------------------------------------------------------------------------
def test_single_image_is_rendered(canvas: ImageCanvas) -> None:
    canvas.set_images([solid(RED)])
    assert canvas.image_count() == 1
    assert canvas.selected_index() == 0
    assert pixel(canvas, QPointF(150, 150)) == RED


def test_grid_of_four_is_two_by_two_in_reading_order(canvas: ImageCanvas) -> None:
    images = [solid(c) for c in (RED, GREEN, BLUE, YELLOW)]
    canvas.set_images(images)
    rendered = canvas.grab().toImage()
    assert {RED, GREEN, BLUE, YELLOW} <= colours_in(rendered)
    # Content is centred and fitted, so each quadrant's middle lies in its cell.
    for point, colour in [((75, 75), RED), ((225, 75), GREEN), ((75, 225), BLUE)]:
        assert rendered.pixelColor(*point).getRgb()[:3] == colour
    assert rendered.pixelColor(225, 225).getRgb()[:3] == YELLOW
    r0, r3 = canvas.cell_rect(0), canvas.cell_rect(3)
    assert r3.left() > r0.right() and r3.top() > r0.bottom()  # a gap between the cells


def test_columns_argument_sets_the_grid(canvas: ImageCanvas) -> None:
    canvas.set_images([solid(RED)] * 6, columns=3)
    assert canvas.cell_rect(2).top() == canvas.cell_rect(0).top()
    assert canvas.cell_rect(3).top() > canvas.cell_rect(0).top()
    assert canvas.cell_rect(3).left() == canvas.cell_rect(0).left()


def test_default_grid_is_near_square(canvas: ImageCanvas) -> None:
    canvas.set_images([solid(RED)] * 5)  # ceil(sqrt(5)) = 3 columns, 2 rows
    assert canvas.cell_rect(2).top() == canvas.cell_rect(0).top()
    assert canvas.cell_rect(3).left() == canvas.cell_rect(0).left()


def test_placeholder_is_drawn_when_empty(canvas: ImageCanvas) -> None:
    blank = canvas.grab().toImage()
    canvas.set_placeholder("Press Ctrl+Enter to generate")
    with_text = canvas.grab().toImage()
    assert blank != with_text
    canvas.set_images([solid(RED)])
    assert RED in colours_in(canvas.grab().toImage())
    canvas.clear()
    assert canvas.grab().toImage() == with_text
    assert canvas.image_count() == 0 and canvas.current_image() is None


def test_nearest_and_smooth_upscaling_differ(canvas: ImageCanvas) -> None:
    canvas.set_images([checkerboard()])
    assert canvas.zoom() > 10
    rect = canvas.cell_rect(0).adjusted(2, 2, -2, -2).toRect()
    crisp = canvas.grab(rect).toImage()
    assert {c[0] for c in colours_in(crisp)} == {0, 255}  # only the model's own pixel values
    with_signal = []
    canvas.smooth_changed.connect(with_signal.append)
    canvas.set_smooth(True)
    rect = canvas.cell_rect(0).adjusted(2, 2, -2, -2).toRect()
    smooth = canvas.grab(rect).toImage()
    greys = {c[0] for c in colours_in(smooth)} - {0, 255}
    assert len(greys) > 5  # interpolated values between black and white
    assert with_signal == [True]


# -- selection --------------------------------------------------------------------------------
def test_click_selects_cell_and_draws_frame(canvas: ImageCanvas, qtbot) -> None:
    images = [solid(c) for c in (RED, GREEN, BLUE, YELLOW)]
    canvas.set_images(images)
    centre = canvas.cell_rect(3).center().toPoint()
    with qtbot.waitSignal(canvas.selection_changed) as blocker:
        qtbot.mouseClick(canvas, Qt.MouseButton.LeftButton, pos=centre)
    assert blocker.args == [3]
    assert canvas.selected_index() == 3
    assert canvas.current_image() is images[3]
    highlight = canvas.palette().color(QPalette.ColorRole.Highlight).getRgb()[:3]
    rect = canvas.cell_rect(3)
    just_outside = QPointF(rect.center().x(), rect.top() - 2)
    assert pixel(canvas, just_outside) == highlight
    outside_cell0 = QPointF(canvas.cell_rect(0).center().x(), canvas.cell_rect(0).top() - 2)
    assert pixel(canvas, outside_cell0) != highlight


def test_click_in_gap_or_outside_keeps_selection(canvas: ImageCanvas, qtbot) -> None:
    canvas.set_images([solid(RED)] * 4)
    spy = []
    canvas.selection_changed.connect(spy.append)
    qtbot.mouseClick(canvas, Qt.MouseButton.LeftButton, pos=QPoint(2, 2))
    gap = QPointF((canvas.cell_rect(0).right() + canvas.cell_rect(1).left()) / 2, 60)
    qtbot.mouseClick(canvas, Qt.MouseButton.LeftButton, pos=gap.toPoint())
    assert spy == [] and canvas.selected_index() == 0


def test_drag_pans_and_does_not_select(canvas: ImageCanvas, qtbot) -> None:
    canvas.set_images([solid(RED)] * 4)
    start = canvas.cell_rect(3).center().toPoint()
    before = canvas.cell_rect(0)
    spy = []
    canvas.selection_changed.connect(spy.append)
    qtbot.mousePress(canvas, Qt.MouseButton.LeftButton, pos=start)
    qtbot.mouseMove(canvas, start + QPoint(-10, -5))
    qtbot.mouseMove(canvas, start + QPoint(-30, -20))
    qtbot.mouseRelease(canvas, Qt.MouseButton.LeftButton, pos=start + QPoint(-30, -20))
    assert spy == [] and canvas.selected_index() == 0
    after = canvas.cell_rect(0)
    assert after.topLeft() - before.topLeft() == QPointF(-30, -20)


def test_middle_drag_pans(canvas: ImageCanvas, qtbot) -> None:
    canvas.set_images([solid(RED)] * 4)
    before = canvas.cell_rect(0)
    qtbot.mousePress(canvas, Qt.MouseButton.MiddleButton, pos=QPoint(150, 150))
    qtbot.mouseMove(canvas, QPoint(170, 160))
    qtbot.mouseRelease(canvas, Qt.MouseButton.MiddleButton, pos=QPoint(170, 160))
    assert canvas.cell_rect(0).topLeft() - before.topLeft() == QPointF(20, 10)


def test_arrow_keys_move_selection(canvas: ImageCanvas, qtbot) -> None:
    canvas.set_images([solid(RED)] * 9)  # 3 x 3
    spy = []
    canvas.selection_changed.connect(spy.append)
    for key in (Qt.Key.Key_Right, Qt.Key.Key_Down, Qt.Key.Key_Left, Qt.Key.Key_Up, Qt.Key.Key_Up):
        qtbot.keyClick(canvas, key)
    assert spy == [1, 4, 3, 0]  # the last Up is off the grid: ignored
    assert canvas.selected_index() == 0


# -- zoom and pan -----------------------------------------------------------------------------
def test_fit_makes_content_fit(canvas: ImageCanvas) -> None:
    canvas.set_smooth(True)  # fractional fit, so it must also be tight
    canvas.set_images([solid(RED, 10)] * 6, columns=3)
    canvas.actual_size()
    assert canvas.zoom() == 1.0
    canvas.fit()
    view = canvas.rect().toRectF()
    content = canvas.cell_rect(0).united(canvas.cell_rect(5))
    assert view.contains(content)
    assert content.width() > 0.9 * view.width()  # the limiting side nearly fills the view
    assert abs(content.center().x() - view.center().x()) < 1
    assert abs(content.center().y() - view.center().y()) < 1


def test_nearest_fit_uses_whole_number_zoom(canvas: ImageCanvas) -> None:
    canvas.set_images([solid(RED, 28)])
    assert canvas.zoom() == int(canvas.zoom()) >= 9
    assert canvas.rect().toRectF().contains(canvas.cell_rect(0))


def test_fit_follows_resize_until_user_zooms(canvas: ImageCanvas) -> None:
    canvas.set_images([solid(RED, 10)])
    small = canvas.zoom()
    canvas.resize(600, 600)
    assert canvas.zoom() > small
    canvas.zoom_in()
    zoomed = canvas.zoom()
    canvas.resize(300, 300)
    assert canvas.zoom() == zoomed


def test_wheel_zooms_anchored_under_cursor(canvas: ImageCanvas) -> None:
    canvas.set_images([solid(RED, 16)] * 4)
    cursor = QPointF(100, 120)
    rect = canvas.cell_rect(0)
    fraction = (cursor - rect.topLeft()) / rect.width()
    zoom = canvas.zoom()
    wheel(canvas, cursor, 1)
    assert canvas.zoom() == pytest.approx(zoom * 1.25)
    rect = canvas.cell_rect(0)
    assert (cursor - rect.topLeft()) / rect.width() == fraction
    wheel(canvas, cursor, -2)
    assert canvas.zoom() == pytest.approx(zoom / 1.25)


def test_zoom_keys(canvas: ImageCanvas, qtbot) -> None:
    canvas.set_images([solid(RED)] * 4)
    fitted = canvas.zoom()
    ctrl = Qt.KeyboardModifier.ControlModifier
    qtbot.keyClick(canvas, Qt.Key.Key_Equal, ctrl)
    assert canvas.zoom() > fitted
    qtbot.keyClick(canvas, Qt.Key.Key_Minus, ctrl)
    qtbot.keyClick(canvas, Qt.Key.Key_Minus, ctrl)
    assert canvas.zoom() < fitted
    qtbot.keyClick(canvas, Qt.Key.Key_1, ctrl)
    assert canvas.zoom() == 1.0
    qtbot.keyClick(canvas, Qt.Key.Key_0, ctrl)
    assert canvas.zoom() == fitted
    canvas.actual_size()
    qtbot.keyClick(canvas, Qt.Key.Key_F)
    assert canvas.zoom() == fitted


def test_pan_cannot_lose_the_content(canvas: ImageCanvas, qtbot) -> None:
    canvas.set_images([solid(RED)])
    qtbot.mousePress(canvas, Qt.MouseButton.LeftButton, pos=QPoint(150, 150))
    qtbot.mouseMove(canvas, QPoint(299, 299))
    qtbot.mouseMove(canvas, QPoint(2000, 2000))
    qtbot.mouseRelease(canvas, Qt.MouseButton.LeftButton, pos=QPoint(2000, 2000))
    assert canvas.rect().toRectF().intersects(canvas.cell_rect(0))


# -- set_images vs show_preview ---------------------------------------------------------------
def test_same_grid_keeps_zoom_new_grid_refits(canvas: ImageCanvas, qtbot) -> None:
    canvas.set_images([solid(RED)] * 4)
    fitted = canvas.zoom()
    canvas.zoom_in()
    zoomed, where = canvas.zoom(), canvas.cell_rect(0)
    canvas.set_images([solid(GREEN)] * 4)
    assert canvas.zoom() == zoomed and canvas.cell_rect(0) == where
    canvas.set_images([solid(GREEN)] * 9)
    assert canvas.zoom() != zoomed
    canvas.set_images([solid(GREEN)] * 4)
    assert canvas.zoom() == fitted


def test_clear_then_set_images_refits_and_selects_first(canvas: ImageCanvas, qtbot) -> None:
    canvas.set_images([solid(RED)] * 4)
    fitted = canvas.zoom()
    qtbot.mouseClick(canvas, Qt.MouseButton.LeftButton, pos=canvas.cell_rect(2).center().toPoint())
    canvas.zoom_in()
    spy = []
    canvas.selection_changed.connect(spy.append)
    canvas.clear()
    canvas.set_images([solid(BLUE)] * 4)
    assert spy == [-1, 0]
    assert canvas.selected_index() == 0 and canvas.zoom() == fitted


def test_preview_keeps_view_and_selection_and_updates_pixels(canvas: ImageCanvas, qtbot) -> None:
    canvas.show_preview([solid(RED)] * 4)  # the first preview fits
    fitted = canvas.zoom()
    qtbot.mouseClick(canvas, Qt.MouseButton.LeftButton, pos=canvas.cell_rect(1).center().toPoint())
    canvas.zoom_out()
    zoom, where = canvas.zoom(), canvas.cell_rect(0)
    assert zoom != fitted
    spy = []
    canvas.selection_changed.connect(spy.append)
    for colour in (GREEN, BLUE):
        canvas.show_preview([solid(colour)] * 4)
    assert spy == [] and canvas.selected_index() == 1
    assert canvas.zoom() == zoom and canvas.cell_rect(0) == where
    assert pixel(canvas, canvas.cell_rect(0).center()) == BLUE


# -- context menu and clipboard ---------------------------------------------------------------
def action(canvas: ImageCanvas, text: str):
    menu = canvas.context_menu()
    return next(a for a in menu.actions() if a.text() == text)


def test_menu_save_emits_selected_index(canvas: ImageCanvas, qtbot) -> None:
    canvas.set_images([solid(RED)] * 4)
    qtbot.mouseClick(canvas, Qt.MouseButton.LeftButton, pos=canvas.cell_rect(2).center().toPoint())
    with qtbot.waitSignal(canvas.save_requested) as blocker:
        action(canvas, "Save image…").trigger()
    assert blocker.args == [2]


def test_menu_save_disabled_when_empty(canvas: ImageCanvas) -> None:
    assert not action(canvas, "Save image…").isEnabled()
    assert not action(canvas, "Copy image").isEnabled()


def test_menu_copy_puts_selected_image_on_clipboard(canvas: ImageCanvas, qtbot) -> None:
    canvas.set_images([solid(RED), solid(GREEN)])
    qtbot.mouseClick(canvas, Qt.MouseButton.LeftButton, pos=canvas.cell_rect(1).center().toPoint())
    action(canvas, "Copy image").trigger()
    copied = QGuiApplication.clipboard().image()
    assert copied.size().width() == 8
    assert copied.pixelColor(4, 4) == QColor(*GREEN)


def test_ctrl_c_copies_image(canvas: ImageCanvas, qtbot) -> None:
    canvas.set_images([solid(BLUE)])
    QGuiApplication.clipboard().clear()
    qtbot.keyClick(canvas, Qt.Key.Key_C, Qt.KeyboardModifier.ControlModifier)
    assert QGuiApplication.clipboard().image().pixelColor(0, 0) == QColor(*BLUE)


def test_menu_view_actions(canvas: ImageCanvas) -> None:
    canvas.set_images([solid(RED)] * 4)
    fitted = canvas.zoom()
    action(canvas, "Actual size").trigger()
    assert canvas.zoom() == 1.0
    action(canvas, "Fit").trigger()
    assert canvas.zoom() == fitted
    smooth = action(canvas, "Smooth upscaling")
    assert smooth.isCheckable() and not smooth.isChecked()
    smooth.trigger()
    assert canvas.smooth()
    assert action(canvas, "Smooth upscaling").isChecked()


def test_shortcut_override_claims_canvas_keys(canvas: ImageCanvas) -> None:
    from PySide6.QtGui import QKeyEvent

    mine = QKeyEvent(QEvent.Type.ShortcutOverride, Qt.Key.Key_F, Qt.KeyboardModifier.NoModifier)
    QApplication.sendEvent(canvas, mine)
    assert mine.isAccepted()
    other = QKeyEvent(QEvent.Type.ShortcutOverride, Qt.Key.Key_Q, Qt.KeyboardModifier.NoModifier)
    other.ignore()
    QApplication.sendEvent(canvas, other)
    assert not other.isAccepted()


def test_quiz_marks_and_answer_are_painted(canvas: ImageCanvas) -> None:
    from gdl_studio.core.cells import Quiz

    grey = Image.new("L", (32, 32), 128)
    canvas.set_images([grey] * 4, columns=2)
    quiz = Quiz((True, False, True, False), marked_means="generated", unmarked_means="real")
    canvas.set_quiz(quiz)

    def colours_in(index: int) -> set[tuple[int, int, int]]:
        shot = canvas.grab().toImage()
        rect = canvas.cell_rect(index).toRect()
        return {
            QColor(shot.pixel(x, y)).getRgb()[:3]
            for x in range(rect.left(), rect.right(), 2)
            for y in range(rect.top(), rect.bottom(), 2)
        }

    plain = colours_in(0)
    canvas.toggle_mark(0)
    assert quiz.marks == {0} and (230, 140, 20) in colours_in(0) - plain  # the "?" badge
    canvas.reveal_quiz()
    assert (40, 170, 70) in colours_in(0)  # marked and generated: right, green
    assert (215, 50, 50) in colours_in(2)  # generated but not marked: wrong, red
    assert (40, 170, 70) in colours_in(1)  # real, not marked: right
    canvas.toggle_mark(1)
    assert quiz.marks == {0}  # frozen once the answer is shown
